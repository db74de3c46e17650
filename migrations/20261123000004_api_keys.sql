-- API keys for services. Only the SHA-256 of a key is stored (keys are 32 random bytes, so a
-- fast hash is enough: there is nothing to brute-force). The unique index on the hash is the
-- lookup path of every API-key request. A key acts as the admin who created it, with `role`.
CREATE TABLE api_keys (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    role       text        NOT NULL CHECK (role IN ('user', 'admin')),
    prefix     text        NOT NULL,
    key_hash   text        NOT NULL UNIQUE,
    created_by uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX api_keys_created ON api_keys (created_at, id);
