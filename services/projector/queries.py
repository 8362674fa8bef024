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

# Many fetch outcomes at once, at most one per player (the latest, see feeds of projection.py).
FETCH_COMPLETED = """
INSERT INTO fetch_status AS s
    (player_key, mode, fetched_at, outcome, http_status, detail, not_found_streak)
SELECT * FROM unnest(
    %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::integer[], %b::text[],
    %b::integer[]
)
ON CONFLICT (player_key) DO UPDATE SET
    mode = EXCLUDED.mode,
    fetched_at = EXCLUDED.fetched_at,
    outcome = EXCLUDED.outcome,
    http_status = EXCLUDED.http_status,
    detail = EXCLUDED.detail,
    not_found_streak = EXCLUDED.not_found_streak
WHERE s.fetched_at <= EXCLUDED.fetched_at
"""

# Every fetch outcome counted, each of them (not only the latest per player).
FETCH_COUNTED = """
INSERT INTO fetch_outcomes (hour, outcome, count)
SELECT date_trunc('hour', at, 'UTC'), outcome, count(*)
FROM unnest(%b::timestamptz[], %b::text[]) AS t (at, outcome)
GROUP BY 1, 2
ON CONFLICT (hour, outcome) DO UPDATE SET count = fetch_outcomes.count + EXCLUDED.count
"""

# Arrays go in binary (%b): in text psycopg escapes every byte of a bytea in Python.

# Many observations at once, of distinct players (one statement a run, see observed.py). Every
# part of a statement sees the snapshot from before it, so `prev` and the later-observation
# test look past the rows this statement inserts. A player never tracked (an observation from a
# manual command of an old API) gets an untracked row, so that nothing observed is dropped; its
# latest values are set by that insert, as the update only sees players that existed before.
OBSERVATIONS = """
WITH input AS (
    SELECT * FROM unnest(
        %(keys)b::text[], %(names)b::text[], %(modes)b::text[], %(ats)b::timestamptz[],
        %(totals)b::integer[], %(xps)b::bigint[], %(combats)b::integer[], %(datas)b::bytea[]
    ) AS t (key, display_name, mode, observed_at, total_level, overall_xp, combat_level, data)
),
added AS (
    INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at,
                         last_changed_at, overall_xp, total_level, combat_level)
    SELECT key, display_name, mode, false, 3600, observed_at,
           observed_at, overall_xp, total_level, combat_level
    FROM input WHERE NOT EXISTS (SELECT 1 FROM players p WHERE p.key = input.key)
    RETURNING key, id
),
ids AS (
    SELECT p.key, p.id FROM players p JOIN input USING (key)  -- a hash join: `= ANY` was a
                                                              -- linear scan of the array
    UNION ALL SELECT key, id FROM added
),
inserted AS (
    INSERT INTO observations (player_id, observed_at, mode, total_level, data)
    SELECT ids.id, i.observed_at, i.mode, i.total_level, i.data FROM input i JOIN ids USING (key)
    ON CONFLICT (player_id, observed_at) DO NOTHING
    RETURNING player_id, observed_at
),
updated AS (
    UPDATE players p SET
        display_name = i.display_name,
        last_changed_at = i.observed_at,
        overall_xp = i.overall_xp,
        total_level = i.total_level,
        combat_level = i.combat_level
    FROM input i JOIN ids USING (key) JOIN inserted n ON n.player_id = ids.id
    WHERE p.id = ids.id AND p.mode = i.mode
      AND (p.last_changed_at IS NULL OR p.last_changed_at <= i.observed_at)
)
SELECT n.player_id, ids.key, prev.observed_at, prev.total_level, prev.data,
       EXISTS (SELECT 1 FROM observations o
               WHERE o.player_id = n.player_id AND o.observed_at > n.observed_at)
FROM inserted n
JOIN ids ON ids.id = n.player_id
LEFT JOIN LATERAL (
    SELECT observed_at, total_level, data FROM observations o
    WHERE o.player_id = n.player_id AND o.observed_at < n.observed_at
    ORDER BY o.observed_at DESC LIMIT 1
) AS prev ON true
"""

# What follows from a chunk of observations, as CTEs: sent alone, or riding with the next
# chunk's OBSERVATIONS so that Postgres writes them while the projector works on that chunk.
# They touch none of the tables OBSERVATIONS reads. A milestone keeps the earliest observation
# that showed it; outbox rows go in the order given, since the relay publishes by id.
WRITES = """
achieved AS (
    INSERT INTO achievements AS a
        (player_id, key, kind, metric, threshold, observed_at, previous_at, before_tracking)
    SELECT * FROM unnest(
        %(a_player)b::integer[], %(a_key)b::text[], %(a_kind)b::text[], %(a_metric)b::text[],
        %(a_threshold)b::bigint[], %(a_at)b::timestamptz[], %(a_previous)b::timestamptz[],
        %(a_first)b::boolean[]
    )
    ON CONFLICT (player_id, key) DO UPDATE SET
        observed_at = EXCLUDED.observed_at,
        previous_at = EXCLUDED.previous_at,
        before_tracking = EXCLUDED.before_tracking
    WHERE a.observed_at > EXCLUDED.observed_at
),
latest_set AS (
    INSERT INTO latest_values (player_id, metric_id, value)
    SELECT * FROM unnest(%(l_player)b::integer[], %(l_metric)b::smallint[], %(l_value)b::bigint[])
    ON CONFLICT (player_id, metric_id) DO UPDATE SET value = EXCLUDED.value
),
latest_drop AS (
    DELETE FROM latest_values l
    USING unnest(%(d_player)b::integer[], %(d_metric)b::smallint[]) AS t (player_id, metric_id)
    WHERE l.player_id = t.player_id AND l.metric_id = t.metric_id
),
outboxed AS (
    INSERT INTO outbox (subject, payload)
    SELECT subject, payload
    FROM unnest(%(o_subject)b::text[], %(o_payload)b::bytea[]) WITH ORDINALITY
        AS t (subject, payload, n)
    ORDER BY n
)"""

WRITES_ALONE = f"WITH {WRITES}\nSELECT 1"

WRITES_AND_OBSERVATIONS = f"WITH {WRITES},\n" + OBSERVATIONS.strip().removeprefix("WITH ")
