UPDATE sfsync.full_load_slices
SET status = %(status)s,
    rows = coalesce(%(rows)s, rows),
    error = %(error)s,
    api_calls = api_calls + %(calls)s,
    attempts = attempts + %(attempt)s,
    finished_at = CASE WHEN %(status)s = 'done' THEN now() END
WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND slice_start = %(start)s
