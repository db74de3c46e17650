-- What GET /api/v1/admin/failures reads: the newest failing deliveries and emails. Partial
-- indexes hold only the failing rows, so the operator page's poll costs the same however many
-- deliveries and emails have succeeded, and the predicates are exactly the query's, so the
-- planner can use them. A delivery is retrying once an attempt failed (`attempts` counts
-- finished attempts); an email once `last_error` is set (its `attempts` also counts the one in
-- flight).
CREATE INDEX webhook_deliveries_failing ON webhook_deliveries (created_at DESC)
    WHERE status = 'failed' OR (status = 'pending' AND attempts > 0);
CREATE INDEX email_outbox_failing ON email_outbox (created_at DESC)
    WHERE status = 'failed' OR (status = 'pending' AND last_error IS NOT NULL);
