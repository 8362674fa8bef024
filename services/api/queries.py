"""Every SQL statement of the API, named."""

from psycopg import sql

from shared.events import UNRANKED_AFTER

# A player's status, from `players p LEFT JOIN fetch_status s`.
STATUS = f"""
CASE WHEN NOT p.tracked THEN 'untracked'
     WHEN s.outcome IS NULL AND p.last_changed_at IS NULL THEN 'pending'
     WHEN s.not_found_streak >= {UNRANKED_AFTER} THEN 'unranked'
     WHEN s.outcome = 'not_found' THEN 'not_found'
     ELSE 'active' END
"""

PLAYER_COLUMNS = f"""
p.key, p.display_name, p.mode, ({STATUS}) AS status, p.interval_s, p.tracked_at,
s.fetched_at, p.last_changed_at, s.outcome, p.overall_xp, p.total_level, p.combat_level
"""

# The columns GET /v1/players may sort by: the only text that reaches its ORDER BY.
LIST_SORT_COLUMNS = {
    "name": "key",
    "tracked_at": "tracked_at",
    "last_changed_at": "last_changed_at",
    "overall_xp": "overall_xp",
}

_LIST_PLAYERS = f"""
SELECT {PLAYER_COLUMNS}
FROM players p LEFT JOIN fetch_status s ON s.player_key = p.key
WHERE (%(status)s::text IS NULL OR ({STATUS}) = %(status)s)
  AND (%(mode)s::text IS NULL OR p.mode = %(mode)s)
  AND (%(key_like)s::text IS NULL OR p.key LIKE %(key_like)s)
  AND {{after}}
ORDER BY {{column}} {{direction}} NULLS LAST, p.key {{direction}}
LIMIT %(limit)s
"""


def list_players(sort: str, descending: bool, after: str | None) -> sql.Composed:
    """The player listing for a sort of LIST_SORT_COLUMNS, resuming after a row (`after`: None on
    the first page, "key" after a row of the name sort, "value" after a row with a sort value,
    "null" after a row without one). Key order breaks ties; rows without a value come last."""
    column = sql.Identifier("p", LIST_SORT_COLUMNS[sort])
    beyond = sql.SQL("<" if descending else ">")
    shapes = {
        None: "TRUE",
        "key": "p.key {beyond} %(after_key)s",
        "value": "(({column}, p.key) {beyond} (%(after_value)s, %(after_key)s)"
        " OR {column} IS NULL)",
        "null": "({column} IS NULL AND p.key {beyond} %(after_key)s)",
    }
    return sql.SQL(_LIST_PLAYERS).format(
        after=sql.SQL(shapes[after]).format(column=column, beyond=beyond),
        column=column,
        direction=sql.SQL("DESC" if descending else "ASC"),
    )


GET_PLAYER = f"""
SELECT {PLAYER_COLUMNS}, s.detail, o.total_level, o.data
FROM players p
LEFT JOIN fetch_status s ON s.player_key = p.key
LEFT JOIN observations o ON o.player_id = p.id AND o.observed_at = p.last_changed_at
WHERE p.key = %s
"""

IS_TRACKED = "SELECT tracked FROM players WHERE key = %s"

METRICS = "SELECT id, key, kind FROM metrics ORDER BY id"

USER_BY_NAME = """
SELECT id, username, password_hash, role, disabled FROM users WHERE lower(username) = lower(%s)
"""

ANY_USER = "SELECT EXISTS (SELECT 1 FROM users)"

CREATE_USER = """
INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING
"""

PLAYER_ID = "SELECT id FROM players WHERE key = %s"

# The two ends of a gains window in one round trip: the player's id (no row: not a player), the
# start (the last observation at or before `start`, else the first inside the window) and the end
# (the last at or before `end`).
GAINS_ENDS = """
SELECT p.id, s.observed_at, s.total_level, s.data, e.observed_at, e.total_level, e.data
FROM players p
LEFT JOIN LATERAL (
    SELECT observed_at, total_level, data FROM (
        (SELECT 0 AS pick, observed_at, total_level, data FROM observations
         WHERE player_id = p.id AND observed_at <= %(start)s
         ORDER BY observed_at DESC LIMIT 1)
        UNION ALL
        (SELECT 1, observed_at, total_level, data FROM observations
         WHERE player_id = p.id AND observed_at > %(start)s AND observed_at <= %(end)s
         ORDER BY observed_at LIMIT 1)
    ) AS ends ORDER BY pick LIMIT 1
) AS s ON true
LEFT JOIN LATERAL (
    SELECT observed_at, total_level, data FROM observations
    WHERE player_id = p.id AND observed_at <= %(end)s
    ORDER BY observed_at DESC LIMIT 1
) AS e ON true
WHERE p.key = %(key)s
"""

OBSERVATIONS_BETWEEN = """
SELECT observed_at, mode, total_level, data FROM observations
WHERE player_id = %(player_id)s AND observed_at >= %(start)s AND observed_at <= %(end)s
  AND observed_at > %(after)s
ORDER BY observed_at
LIMIT %(limit)s
"""


# Tokens and API keys (services/api/tokens.py, auth.py, api_keys.py).

# Every request with an access token: its user as now, and whether the token was revoked.
ACCESS_TOKEN_HOLDER = """
SELECT u.username, u.role, u.disabled,
       EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = %(jti)s)
FROM users u WHERE u.id = %(user_id)s
"""

# Every request with an API key: the key and its owner; last_used_at written at most once a minute.
API_KEY_HOLDER = """
WITH key AS (
    SELECT k.id, k.user_id, k.role, k.last_used_at, u.username, u.role AS user_role, u.disabled
    FROM api_keys k JOIN users u ON u.id = k.user_id
    WHERE k.key_hash = %s AND k.revoked_at IS NULL
), touched AS (
    UPDATE api_keys SET last_used_at = now() FROM key
    WHERE api_keys.id = key.id AND NOT key.disabled
      AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute')
)
SELECT id, user_id, role, username, user_role, disabled FROM key
"""

INSERT_REFRESH_TOKEN = """
INSERT INTO refresh_tokens
    (token_hash, family_id, user_id, expires_at, access_jti, access_expires_at)
VALUES (%(token_hash)s, %(family_id)s, %(user_id)s, now() + make_interval(secs => %(ttl_s)s),
        %(access_jti)s, %(access_expires_at)s)
"""

REFRESH_TOKEN_FOR_UPDATE = """
SELECT r.family_id, r.user_id, r.used_at IS NOT NULL, r.revoked_at IS NOT NULL,
       r.expires_at <= now(), u.role, u.disabled
FROM refresh_tokens r JOIN users u ON u.id = r.user_id
WHERE r.token_hash = %s
FOR UPDATE OF r
"""

MARK_REFRESH_TOKEN_USED = "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = %s"

REFRESH_FAMILY_OF = "SELECT family_id FROM refresh_tokens WHERE token_hash = %s AND user_id = %s"

# A family's refresh tokens, and the access tokens issued with them that are still valid.
REVOKE_REFRESH_FAMILY = """
WITH family AS (
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE family_id = %s AND revoked_at IS NULL
    RETURNING user_id, access_jti, access_expires_at
)
INSERT INTO revoked_tokens (jti, user_id, expires_at)
SELECT access_jti, user_id, access_expires_at FROM family WHERE access_expires_at > now()
ON CONFLICT (jti) DO NOTHING
"""

REVOKE_ACCESS_TOKEN = """
INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (jti) DO NOTHING
"""

# Revoked access tokens past their expiry (and the verifier's leeway) need no row any more.
PRUNE_REVOKED_TOKENS = "DELETE FROM revoked_tokens WHERE expires_at < now() - interval '1 minute'"

PRUNE_REFRESH_TOKENS = "DELETE FROM refresh_tokens WHERE user_id = %s AND expires_at < now()"

_API_KEY_COLUMNS = """
k.id, k.name, k.role, k.prefix, u.username, k.created_at, k.last_used_at, k.revoked_at
"""

CREATE_API_KEY = f"""
WITH k AS (
    INSERT INTO api_keys (user_id, name, role, key_hash, prefix)
    VALUES (%(user_id)s, %(name)s, %(role)s, %(key_hash)s, %(prefix)s)
    RETURNING *
)
SELECT {_API_KEY_COLUMNS} FROM k JOIN users u ON u.id = k.user_id
"""

LIST_API_KEYS = f"""
SELECT {_API_KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE %(user_id)s::bigint IS NULL OR k.user_id = %(user_id)s
ORDER BY k.id
"""

# Revoked by its owner or an admin (user_id NULL); a key revoked already keeps its first date.
REVOKE_API_KEY = f"""
WITH k AS (
    UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
    WHERE id = %(id)s AND (%(user_id)s::bigint IS NULL OR user_id = %(user_id)s)
    RETURNING *
)
SELECT {_API_KEY_COLUMNS} FROM k JOIN users u ON u.id = k.user_id
"""
