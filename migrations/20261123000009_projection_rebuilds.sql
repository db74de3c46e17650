-- Rebuilds in progress: a projector being rebuilt into shadow tables (schema
-- chronicle_rebuild) has a row here with the shadow copy's own checkpoint, so an interrupted
-- rebuild resumes where it stopped. The row is deleted in the transaction that swaps the
-- shadow tables in.
CREATE TABLE projection_rebuilds (
    name           text        PRIMARY KEY,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    applied        bigint      NOT NULL DEFAULT 0,
    total          bigint      NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS chronicle_rebuild;
