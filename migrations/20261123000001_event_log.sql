-- The event log. postgres-es owns the first seven columns and the primary key; the primary key
-- on (aggregate_type, aggregate_id, sequence) is what makes optimistic concurrency work: two
-- writers appending the same next sequence cannot both succeed.
CREATE TABLE events (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence > 0),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        jsonb  NOT NULL,
    metadata       jsonb  NOT NULL,
    -- The columns below are not named in postgres-es's INSERT, so their defaults fill them.
    -- A global number: unique, but NOT commit order (a transaction that takes a number early
    -- may commit after one that took a later number).
    position       bigserial   NOT NULL,
    -- The writing transaction. Readers order by (transaction_id, position) and only read
    -- transactions older than every running one, so a late commit is never skipped.
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL DEFAULT gen_random_uuid(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Whole-log readers (projectors, the relay, GET /events) walk this index from a checkpoint.
CREATE UNIQUE INDEX events_log_order ON events (transaction_id, position);
-- Event ids are what NATS deduplicates on and what webhooks send as webhook-id.
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- postgres-es's snapshot table. Chronicle does not use snapshot stores (they apply new events
-- twice); the table exists so postgres-es's repository finds the schema it expects.
CREATE TABLE snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          jsonb  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Wakes log readers. Statement-level, so a multi-event append sends one notification; NOTIFY
-- is delivered at commit, which is exactly when the new events become readable.
CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();
