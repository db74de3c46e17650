-- Webhook endpoints. The secret must be readable to sign deliveries, so it is stored as is;
-- `previous_secret` keeps signing beside it for 24 hours after a rotation.
CREATE TABLE webhook_endpoints (
    id                         uuid        PRIMARY KEY,
    url                        text        NOT NULL,
    event_types                text[]      NOT NULL CHECK (cardinality(event_types) > 0),
    description                text,
    enabled                    boolean     NOT NULL DEFAULT true,
    disabled_reason            text,
    secret                     text        NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created_by                 uuid        NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_created ON webhook_endpoints (created_at, id);

-- One delivery per endpoint and event: the unique pair makes the consumer idempotent when NATS
-- redelivers, and a replay resets the row instead of adding one (the `webhook-id` a receiver
-- deduplicates on is the event id, the same on every attempt). Retries are scheduled here, so
-- a restart loses none.
CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
-- The sender's queue: due pending deliveries, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);
