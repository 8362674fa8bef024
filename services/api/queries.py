"""Every SQL statement of the API, named."""

from shared.events import UNRANKED_AFTER

_STATUS = f"""
CASE WHEN NOT p.tracked THEN 'untracked'
     WHEN s.outcome IS NULL AND p.last_changed_at IS NULL THEN 'pending'
     WHEN s.not_found_streak >= {UNRANKED_AFTER} THEN 'unranked'
     WHEN s.outcome = 'not_found' THEN 'not_found'
     ELSE 'active' END
"""

PLAYER_COLUMNS = f"""
p.key, p.display_name, p.mode, ({_STATUS}) AS status, p.interval_s, p.tracked_at,
s.fetched_at, p.last_changed_at, s.outcome, p.overall_xp, p.total_level, p.combat_level
"""

LIST_PLAYERS = f"""
SELECT {PLAYER_COLUMNS}
FROM players p LEFT JOIN fetch_status s ON s.player_key = p.key
WHERE p.key > %(cursor)s AND (%(status)s::text IS NULL OR ({_STATUS}) = %(status)s)
ORDER BY p.key
LIMIT %(limit)s
"""

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
