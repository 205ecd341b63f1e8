-- How long each run took, from its first start to its finish (retries and the wait between its tasks
-- included), kept next to its counters so that a slow object shows in one query. A run not finished yet
-- has no finish time, and no duration.
ALTER TABLE sfsync.sync_runs ALTER COLUMN finished_at DROP NOT NULL, ALTER COLUMN finished_at DROP DEFAULT;
ALTER TABLE sfsync.sync_runs ADD COLUMN duration interval GENERATED ALWAYS AS (finished_at - started_at) STORED;
