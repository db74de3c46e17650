-- How far the NATS relay has published the log, per JetStream stream. Advanced only after
-- JetStream acknowledged every message up to it; lowered again when the stream turns out to
-- have lost acknowledged messages (a NATS crash), so the missing tail is published again.
CREATE TABLE relay_checkpoints (
    stream         text        PRIMARY KEY,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
