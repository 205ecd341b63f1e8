SELECT status, window_start, watermark, new, updated, deleted, skipped, failed, api_calls,
    extract(epoch FROM duration)::float8 AS seconds
FROM sfsync.sync_runs
WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND direction = %(direction)s
FOR UPDATE
