-- Runs of one object and direction that never finished (their worker died, or their merge never
-- succeeded), closed by the next run while it holds the object's lock, so none of them is still at work.
-- They keep no finish time: they never finished. Returns them, so their staging tables can be dropped.
UPDATE sfsync.sync_runs
SET status = 'abandoned',
    message = concat_ws('; ', message, 'never finished: run ' || %(run_id)s || ' went on without it')
WHERE sobject = %(sobject)s AND direction = %(direction)s AND run_id <> %(run_id)s
  AND status IN ('extracting', 'pushing', 'reconciling')
RETURNING run_id
