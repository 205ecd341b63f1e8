-- Runs of one object and direction that never finished (their worker died, or their merge never
-- succeeded), closed by a later run. Only runs older than a DAG run may last: Airflow has failed any such
-- run still marked at work (a younger one may be another deployment's, between its extract and merge).
-- They keep no finish time: they never finished. Returns them, so their staging tables can be dropped.
UPDATE sfsync.sync_runs
SET status = 'abandoned',
    message = concat_ws('; ', message, 'never finished: run ' || %(run_id)s || ' went on without it')
WHERE sobject = %(sobject)s AND direction = %(direction)s AND run_id <> %(run_id)s
  AND status IN ('extracting', 'skipping', 'pushing', 'reconciling') AND started_at < now() - %(stale_after)s
RETURNING run_id
