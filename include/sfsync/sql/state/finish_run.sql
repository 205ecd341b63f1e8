-- Wall-clock times (clock_timestamp): a run may start, and finish, inside one long transaction. A run
-- finished without a message of its own keeps the one its extract left (warnings about the registry).
UPDATE sfsync.sync_runs
SET status = %(status)s, new = %(new)s, updated = %(updated)s, deleted = %(deleted)s, skipped = %(skipped)s,
    failed = %(failed)s, api_calls = api_calls + %(api_calls)s, finished_at = clock_timestamp(),
    message = coalesce(%(message)s, message)
WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND direction = %(direction)s
