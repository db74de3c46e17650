-- Analytics counters, fed by a durable JetStream consumer. `analytics_processed` is the ledger
-- that makes counting idempotent: an event's counters are bumped in the same transaction that
-- records its id, so a redelivered message counts nothing twice.
CREATE TABLE analytics_processed (
    event_id     uuid        PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Events per type per hour (registrations, logins, publications are types of their own).
CREATE TABLE analytics_hourly (
    bucket     timestamptz NOT NULL,
    event_type text        NOT NULL,
    count      bigint      NOT NULL,
    PRIMARY KEY (bucket, event_type)
);

-- Who was active in each hour; distinct counts over any range come from here.
CREATE TABLE analytics_active_users (
    bucket  timestamptz NOT NULL,
    user_id uuid        NOT NULL,
    PRIMARY KEY (bucket, user_id)
);
