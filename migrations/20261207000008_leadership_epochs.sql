-- Fencing for the leaders of the projectors and the relay (issue 23). A leader's advisory lock
-- can be lost while the leader still runs (its connection killed), so each takeover bumps the
-- role's epoch in its checkpoint row, and every checkpoint write of a leader requires the row to
-- still carry its epoch: a deposed leader's writes match no row and it stops. The bump locks the
-- row, so it also waits for a batch the old leader has in flight. `leader_since` is when the
-- current leader took over, for `GET /admin/projections`.
ALTER TABLE projection_checkpoints
    ADD COLUMN leader_epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN leader_since timestamptz;

ALTER TABLE relay_checkpoints
    ADD COLUMN leader_epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN leader_since timestamptz;
