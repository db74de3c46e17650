-- Secrets at rest are sealed (XChaCha20-Poly1305 under SECRETS_KEY) from this version on.
--
-- Stored idempotent answers were kept in plaintext and some held credentials (tokens, API keys,
-- webhook secrets). They only serve retries for 24 hours, so they are dropped rather than
-- sealed (SQL cannot encrypt): a retry of a request answered before the upgrade runs afresh.
-- From now on `body` holds a sealed answer.
DELETE FROM idempotency_keys;
COMMENT ON COLUMN idempotency_keys.body IS
    'the answer body, sealed under SECRETS_KEY and bound to (principal, key)';

-- Webhook signing secrets must stay readable to sign deliveries, so they are sealed, not
-- hashed. A migration cannot encrypt: the server seals the rows that still hold plaintext at
-- start (src/fanout/webhooks/store.rs, seal_plaintext_secrets) and reads both forms meanwhile.
COMMENT ON COLUMN webhook_endpoints.secret IS
    'sealed:v1:<hex>, the signing secret sealed under SECRETS_KEY';
COMMENT ON COLUMN webhook_endpoints.previous_secret IS
    'the rotated-away secret, sealed like secret; signs until previous_secret_expires_at';

-- An API key's listed prefix is stored without the constant `sk_live_` (answers add it back),
-- so scanning the database for `sk_live_` finds only a leaked key. `left(..)` rather than
-- LIKE, whose `_` is a wildcard.
UPDATE api_keys SET prefix = substr(prefix, 9) WHERE left(prefix, 8) = 'sk_live_';
