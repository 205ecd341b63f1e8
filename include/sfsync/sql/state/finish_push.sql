UPDATE sfsync.sync_runs
SET status = %(status)s, api_calls = api_calls + %(api_calls)s, finished_at = clock_timestamp(), message = %(message)s
WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND direction = %(direction)s
RETURNING new, updated, deleted, skipped, failed
