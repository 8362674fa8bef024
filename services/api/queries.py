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
SELECT username, password_hash, role, disabled FROM users WHERE lower(username) = lower(%s)
"""

ANY_USER = "SELECT EXISTS (SELECT 1 FROM users)"

CREATE_USER = """
INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING
"""

PLAYER_ID = "SELECT id FROM players WHERE key = %s"

OBSERVATION_AT = """
SELECT observed_at, total_level, data FROM observations
WHERE player_id = %s AND observed_at <= %s
ORDER BY observed_at DESC LIMIT 1
"""

FIRST_OBSERVATION_IN = """
SELECT observed_at, total_level, data FROM observations
WHERE player_id = %s AND observed_at > %s AND observed_at <= %s
ORDER BY observed_at LIMIT 1
"""

OBSERVATIONS_BETWEEN = """
SELECT observed_at, mode, total_level, data FROM observations
WHERE player_id = %(player_id)s AND observed_at >= %(start)s AND observed_at <= %(end)s
  AND observed_at > %(after)s
ORDER BY observed_at
LIMIT %(limit)s
"""
