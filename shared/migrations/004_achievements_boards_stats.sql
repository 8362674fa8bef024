-- Achievements: each milestone of shared/milestones.py with the observation that first showed
-- it; before_tracking when that was the player's first observation.
CREATE TABLE achievements (
    player_id      integer NOT NULL REFERENCES players (id),
    key            text NOT NULL,
    kind           text NOT NULL,
    metric         text,
    threshold      bigint NOT NULL,
    observed_at    timestamptz NOT NULL,
    previous_at    timestamptz,         -- the observation before: reached between the two
    before_tracking boolean NOT NULL,
    PRIMARY KEY (player_id, key)
);

-- The latest value of every ranked metric of every player: the current leaderboards read it
-- by metric, highest first, without unpacking observations.
CREATE TABLE latest_values (
    player_id   integer NOT NULL REFERENCES players (id),
    metric_id   smallint NOT NULL,
    value       bigint NOT NULL,
    PRIMARY KEY (player_id, metric_id)
);
CREATE INDEX latest_values_board_idx ON latest_values (metric_id, value DESC, player_id);

-- Fetch outcomes per hour as the projector saw them on OSRS_STATUS, for /v1/stats.
CREATE TABLE fetch_outcomes (
    hour     timestamptz NOT NULL,
    outcome  text NOT NULL,
    count    integer NOT NULL,
    PRIMARY KEY (hour, outcome)
);

-- Derived from OSRS_EVT: replay the log into them.
DELETE FROM projector_checkpoints WHERE stream = 'OSRS_EVT';
TRUNCATE observations;
