-- Per-account sign-in throttling (LOGIN_FAILURES_PER_ACCOUNT): failed sign-ins per account in
-- a fixed 15-minute window, shared by every instance behind a load balancer.
-- `account` is an HMAC-SHA256 of the normalised email under a key only the servers hold, so
-- the table names no email and a reader of the database cannot test guesses against it;
-- unknown emails get rows exactly like known ones. The primary key is the only lookup: each
-- sign-in does one upsert on it (and one update when it succeeds). A background sweep deletes
-- rows whose window has ended; the table then holds only the accounts tried in the last 15
-- minutes, so the sweep's scan is cheap and no second index (a second write per sign-in) is
-- kept for it.
CREATE TABLE login_throttle (
    account        bytea       PRIMARY KEY CHECK (octet_length(account) = 32),
    window_started timestamptz NOT NULL,
    -- Attempts counted in this window, less those that signed in; saturates one past the limit.
    failures       integer     NOT NULL CHECK (failures >= 0)
);
