-- Email uniqueness across user aggregates. The primary key on the normalised (lower-cased,
-- trimmed) email is the whole mechanism: of any number of concurrent claims, one insert wins.
-- Rows are never deleted, so an address stays bound to the user who registered it and login
-- finds the user by email without a read model.
CREATE TABLE email_claims (
    email      text        PRIMARY KEY CHECK (email = lower(btrim(email))),
    user_id    uuid        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX email_claims_user_id ON email_claims (user_id);
