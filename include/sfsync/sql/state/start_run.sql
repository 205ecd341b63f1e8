-- A run's window is frozen when it first starts: a retried attempt finds it here and reuses it.
INSERT INTO sfsync.sync_runs (run_id, sobject, direction, status, window_start, watermark, started_at)
VALUES (%(run_id)s, %(sobject)s, %(direction)s, %(status)s, %(window_start)s, %(watermark)s, clock_timestamp())
ON CONFLICT (run_id, sobject, direction) DO NOTHING
