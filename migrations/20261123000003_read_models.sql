-- One row per projector: how far it has read the log, and whether it is healthy. The runner
-- updates this row in the same transaction as the read-model changes, so a crash can neither
-- repeat nor lose an event. transaction_id is the xid8 of the log order, stored as bigint.
CREATE TABLE projection_checkpoints (
    name           text        PRIMARY KEY,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    status         text        NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'rebuilding', 'failed', 'stopped')),
    last_error     text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Users. `search` serves q= (name, email and bio; the 'simple' configuration so names are not
-- stemmed). Every documented sort has an index whose trailing id makes the keyset unique;
-- btree indexes scan backwards, so one index serves both directions.
CREATE TABLE users_view (
    id             uuid        PRIMARY KEY,
    email          text        NOT NULL,
    name           text        NOT NULL,
    bio            text        NOT NULL DEFAULT '',
    role           text        NOT NULL,
    status         text        NOT NULL,
    email_verified boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint      NOT NULL,
    search         tsvector    GENERATED ALWAYS AS (
                       setweight(to_tsvector('simple', name), 'A') ||
                       setweight(to_tsvector('simple', email), 'A') ||
                       setweight(to_tsvector('simple', bio), 'B')) STORED
);
CREATE INDEX users_view_created ON users_view (created_at, id);
CREATE INDEX users_view_name ON users_view (name, id);
CREATE INDEX users_view_email ON users_view (email, id);
CREATE INDEX users_view_role_created ON users_view (role, created_at, id);
CREATE INDEX users_view_status_created ON users_view (status, created_at, id);
CREATE INDEX users_view_search ON users_view USING gin (search);

-- Posts. Deleted posts are removed. Sorting by published_at puts drafts (no publication
-- time) first ascending / last descending through the -infinity stand-in, which keeps the
-- keyset comparison free of NULLs.
CREATE TABLE posts_view (
    id           uuid        PRIMARY KEY,
    author_id    uuid        NOT NULL,
    title        text        NOT NULL,
    body         text        NOT NULL,
    tags         text[]      NOT NULL DEFAULT '{}',
    status       text        NOT NULL CHECK (status IN ('draft', 'published')),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    published_at timestamptz,
    version      bigint      NOT NULL,
    search       tsvector    GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', title), 'A') ||
                     setweight(to_tsvector('english', body), 'B')) STORED
);
CREATE INDEX posts_view_created ON posts_view (created_at, id);
CREATE INDEX posts_view_status_created ON posts_view (status, created_at, id);
CREATE INDEX posts_view_author_created ON posts_view (author_id, created_at, id);
CREATE INDEX posts_view_published ON posts_view ((coalesce(published_at, '-infinity'::timestamptz)), id);
CREATE INDEX posts_view_status_published ON posts_view (status, (coalesce(published_at, '-infinity'::timestamptz)), id);
CREATE INDEX posts_view_title ON posts_view (title, id);
CREATE INDEX posts_view_tags ON posts_view USING gin (tags);
CREATE INDEX posts_view_search ON posts_view USING gin (search);

-- Sessions, for /me/sessions.
CREATE TABLE sessions_view (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('active', 'revoked', 'compromised')),
    ip           text,
    user_agent   text,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    version      bigint      NOT NULL
);
CREATE INDEX sessions_view_user ON sessions_view (user_id, created_at, id);

-- Per-aggregate history (GET /users/{id}/history) reads the primary key; the global log reads
-- events_log_order. Filtering /events by type uses this one.
CREATE INDEX events_type_order ON events (event_type, transaction_id, position);

-- Wakes every instance's read-your-writes waiters when a projector commits progress.
CREATE FUNCTION notify_projection_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_projections',
                      NEW.name || ' ' || NEW.transaction_id || '.' || NEW.position);
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_progress
    AFTER INSERT OR UPDATE OF transaction_id, position ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION notify_projection_progress();
