-- Transactional email. The outbox is written by one more reader of the event log (the
-- `email_outbox` projector), in the same transaction as its checkpoint, so every event that
-- asks for an email yields exactly one row however often the log is replayed; a sender worker
-- delivers the rows over SMTP and records each attempt here. No row holds a token or a body:
-- the sender renders the message and derives the link's token (from `token_nonce` and the
-- server key) at each attempt.
CREATE TABLE email_outbox (
    id              uuid        PRIMARY KEY,
    -- The event that asked for the message. Unique with the kind: a replayed event inserts
    -- nothing twice.
    event_id        uuid        NOT NULL,
    kind            text        NOT NULL
                                CHECK (kind IN ('welcome', 'verification', 'password_reset', 'password_changed')),
    user_id         uuid        NOT NULL,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    -- What the link's token is derived from together with the server key; never the token.
    token_nonce     text,
    -- SHA-256 of a reset link's token: how a confirmation finds its user (the aggregate then
    -- decides whether the token is the newest and unexpired).
    token_hash      text,
    -- Fixed when the row is made, so every attempt carries the same Message-ID.
    message_id      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    -- A claimed row is pushed forward by a lease before it is sent, so a sender that dies
    -- mid-attempt leaves it to be retried, never lost, and two senders never take it at once.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Transient failures are retried until then (24 h), then the row is `failed`; an
    -- operator's retry starts a new 24 h.
    retry_until     timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    sent_at         timestamptz,
    UNIQUE (event_id, kind),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

-- The sender's claim query: due pending rows only, so sent and failed history costs nothing.
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'pending';
-- GET /admin/emails pages newest first with (created_at, id) as the keyset.
CREATE INDEX email_outbox_listing ON email_outbox (created_at DESC, id DESC);
-- Reset confirmations look a token up by its hash; tokens are unique by construction.
CREATE UNIQUE INDEX email_outbox_token_hash ON email_outbox (token_hash) WHERE token_hash IS NOT NULL;

-- Who to mail about a user whose event names no address (user.password_changed), kept by the
-- same projector from user.registered. Users registered before this migration come from the
-- users read model.
CREATE TABLE email_recipients (
    user_id uuid PRIMARY KEY,
    email   text NOT NULL
);
INSERT INTO email_recipients (user_id, email) SELECT id, email FROM users_view;

-- Wakes the sender when rows arrive; NOTIFY is delivered at commit, when they become visible.
CREATE FUNCTION notify_email_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_emails', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER email_outbox_inserted
    AFTER INSERT ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_email_outbox();

-- The projector starts at the current head: events from before email existed send nothing
-- (a database upgraded with users in it does not welcome them all again).
INSERT INTO projection_checkpoints (name, transaction_id, position)
SELECT 'email_outbox', transaction_id::text::bigint, position
  FROM events
 ORDER BY events.transaction_id DESC, events.position DESC
 LIMIT 1;
