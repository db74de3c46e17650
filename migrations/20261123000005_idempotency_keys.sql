-- Idempotency keys (Stripe's semantics). The primary key (principal, key) is what makes two
-- racing requests with one key run once: the first insert wins, the other sees the row.
-- `fingerprint` is the SHA-256 of method, path and body, to tell a retry from a different
-- request. Rows are kept 24 hours; a background sweep deletes older ones, and an expired row
-- is replaced rather than replayed.
CREATE TABLE idempotency_keys (
    principal   text        NOT NULL,
    key         text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'done')),
    status      integer,
    headers     jsonb,
    body        bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
