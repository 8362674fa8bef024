-- Progress events for outside subscribers, written by the projector in the same transaction as
-- the read models they come from, then published to OSRS_PROGRESS by the relay in id order,
-- with Nats-Msg-Id = id, and marked sent.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
