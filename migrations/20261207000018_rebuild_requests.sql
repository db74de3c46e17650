-- Rebuilds requested over HTTP are durable work (issue 23): the request is this row with
-- `requested_at` set, and whichever instance leads the projector carries it out, resuming from
-- the shadow checkpoint when the instance that was running it dies. A rebuild run from the CLI
-- leaves it null: the operator's process runs it (and a rerun resumes it).
ALTER TABLE projection_rebuilds ADD COLUMN requested_at timestamptz;
