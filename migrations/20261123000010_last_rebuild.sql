-- The last finished rebuild of each projector, so an operator (and the /admin page) can tell a
-- rebuild that finished between two looks from one that never started.
ALTER TABLE projection_checkpoints
    ADD COLUMN last_rebuild_finished_at timestamptz,
    ADD COLUMN last_rebuild_events      bigint;
