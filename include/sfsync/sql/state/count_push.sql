-- A push's counters grow with each settled call, in the call's own transaction: a push that dies midway
-- and is retried still reports everything each attempt settled.
UPDATE sfsync.sync_runs
SET new = new + %(new)s, updated = updated + %(updated)s, deleted = deleted + %(deleted)s,
    skipped = skipped + %(skipped)s, failed = failed + %(failed)s
WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND direction = %(direction)s
