"""Every SQL statement of the projector, named."""

LOCK_CHECKPOINT = """
INSERT INTO projector_checkpoints (stream, last_seq) VALUES (%s, 0)
ON CONFLICT (stream) DO UPDATE SET stream = EXCLUDED.stream
RETURNING last_seq, tableoid
"""

CHECKPOINTS = "SELECT stream, last_seq FROM projector_checkpoints"

SAVE_CHECKPOINT = """
UPDATE projector_checkpoints SET last_seq = %s, updated_at = now() WHERE stream = %s
"""

SEED_METRIC = """
INSERT INTO metrics (key, name, kind) VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING
"""

METRIC_IDS = "SELECT key, id, kind FROM metrics"

# Returns what the player was before: a progress event says when tracking starts or the mode
# changes.
PLAYER_TRACKED = """
WITH before AS (SELECT tracked, mode FROM players WHERE key = %(key)s FOR UPDATE)
INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at, tracked_by)
VALUES (%(key)s, %(display_name)s, %(mode)s, true, %(interval_s)s, %(at)s, %(by)s)
ON CONFLICT (key) DO UPDATE SET
    display_name = EXCLUDED.display_name,
    mode = EXCLUDED.mode,
    interval_s = EXCLUDED.interval_s,
    tracked_at = CASE WHEN players.tracked THEN players.tracked_at ELSE EXCLUDED.tracked_at END,
    tracked_by = CASE WHEN players.tracked THEN players.tracked_by ELSE EXCLUDED.tracked_by END,
    tracked = true,
    untracked_at = NULL
RETURNING (SELECT tracked FROM before), (SELECT mode FROM before)
"""

PLAYER_UNTRACKED = """
UPDATE players SET tracked = false, untracked_at = %(at)s WHERE key = %(key)s AND tracked
RETURNING display_name, mode
"""

PLAYER_UPDATED = """
WITH before AS (SELECT key, mode FROM players WHERE key = %(key)s FOR UPDATE)
UPDATE players p SET
    display_name = COALESCE(%(display_name)s, p.display_name),
    mode = COALESCE(%(mode)s, p.mode),
    interval_s = COALESCE(%(interval_s)s, p.interval_s)
FROM before
WHERE p.key = before.key AND (%(if_mode)s::text IS NULL OR p.mode = %(if_mode)s)
RETURNING before.mode, p.mode, p.display_name
"""

# An observation of a player never tracked (it can only come from a manual command of an old
# API) still gets a row: untracked, so that nothing observed is dropped.
PLAYER_ID = """
WITH known AS (SELECT id FROM players WHERE key = %(key)s),
added AS (
    INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)
    SELECT %(key)s, %(display_name)s, %(mode)s, false, 3600, %(observed_at)s
    WHERE NOT EXISTS (SELECT 1 FROM known)
    RETURNING id
)
SELECT id FROM known UNION ALL SELECT id FROM added
"""

INSERT_OBSERVATION = """
INSERT INTO observations (player_id, observed_at, mode, total_level, data)
VALUES (%(player_id)s, %(observed_at)s, %(mode)s, %(total_level)s, %(data)s)
ON CONFLICT (player_id, observed_at) DO NOTHING
RETURNING 1
"""

PLAYER_OBSERVED = """
UPDATE players SET
    display_name = %(display_name)s,
    last_changed_at = %(observed_at)s,
    overall_xp = %(overall_xp)s,
    total_level = %(total_level)s,
    combat_level = %(combat_level)s
WHERE key = %(key)s AND mode = %(mode)s
  AND (last_changed_at IS NULL OR last_changed_at <= %(observed_at)s)
"""

FETCH_COMPLETED = """
INSERT INTO fetch_status AS s
    (player_key, mode, fetched_at, outcome, http_status, detail, not_found_streak)
VALUES (%(key)s, %(mode)s, %(at)s, %(outcome)s, %(http_status)s, %(detail)s, %(streak)s)
ON CONFLICT (player_key) DO UPDATE SET
    mode = EXCLUDED.mode,
    fetched_at = EXCLUDED.fetched_at,
    outcome = EXCLUDED.outcome,
    http_status = EXCLUDED.http_status,
    detail = EXCLUDED.detail,
    not_found_streak = EXCLUDED.not_found_streak
WHERE s.fetched_at <= EXCLUDED.fetched_at
"""

FETCH_COUNTED = """
INSERT INTO fetch_outcomes (hour, outcome, count)
VALUES (date_trunc('hour', %(at)s::timestamptz, 'UTC'), %(outcome)s, 1)
ON CONFLICT (hour, outcome) DO UPDATE SET count = fetch_outcomes.count + 1
"""

# The observation before this one, and whether a later one exists (an event out of order).
PREVIOUS_OBSERVATION = """
SELECT prev.observed_at, prev.total_level, prev.data,
       EXISTS (SELECT 1 FROM observations
               WHERE player_id = %(player_id)s AND observed_at > %(observed_at)s)
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT observed_at, total_level, data FROM observations
    WHERE player_id = %(player_id)s AND observed_at < %(observed_at)s
    ORDER BY observed_at DESC LIMIT 1
) AS prev ON true
"""

# A milestone keeps the earliest observation that showed it.
ACHIEVED = """
INSERT INTO achievements AS a
    (player_id, key, kind, metric, threshold, observed_at, previous_at, before_tracking)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (player_id, key) DO UPDATE SET
    observed_at = EXCLUDED.observed_at,
    previous_at = EXCLUDED.previous_at,
    before_tracking = EXCLUDED.before_tracking
WHERE a.observed_at > EXCLUDED.observed_at
"""

LATEST_SET = """
INSERT INTO latest_values (player_id, metric_id, value)
SELECT %(player_id)s, m, v FROM unnest(%(metric_ids)s::smallint[], %(values)s::bigint[]) AS t (m, v)
ON CONFLICT (player_id, metric_id) DO UPDATE SET value = EXCLUDED.value
"""

LATEST_DROP = """
DELETE FROM latest_values WHERE player_id = %(player_id)s AND metric_id = ANY(%(metric_ids)s)
"""

OUTBOX = "INSERT INTO outbox (subject, payload) VALUES (%s, %s)"
