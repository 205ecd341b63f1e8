-- One row per object of %(objects)s: its last run, last success, watermark, the last 24 hours' rows and
-- calls, the write-back backlog, open errors and an unfinished full load. Each part reads an index.
WITH objects AS (SELECT unnest(%(objects)s::text[]) AS sobject),
day AS (
    SELECT r.sobject,
           coalesce(sum(r.written) FILTER (WHERE r.direction <> 'outbound'), 0)::bigint AS rows_in,
           coalesce(sum(r.written) FILTER (WHERE r.direction = 'outbound'), 0)::bigint AS rows_out,
           coalesce(sum(r.api_calls), 0)::bigint AS api_calls
    FROM objects o JOIN sfsync.sync_runs r ON r.sobject = o.sobject AND r.started_at >= now() - interval '24 hours'
    GROUP BY r.sobject
),
backlog AS (
    SELECT x.sobject, count(*) AS pending, extract(epoch FROM now() - min(x.changed_at))::float8 AS oldest
    FROM objects o JOIN sfsync.outbox x ON x.sobject = o.sobject AND x.pushed_at IS NULL
    GROUP BY x.sobject
),
errors AS (
    SELECT e.sobject, count(*) AS open
    FROM objects o JOIN sfsync.sync_errors e ON e.sobject = o.sobject AND e.dismissed_at IS NULL
    GROUP BY e.sobject
),
loading AS (
    SELECT DISTINCT ON (sobject) * FROM (
        SELECT f.sobject, f.run_id, max(f.planned_at) AS planned_at,
               count(*) FILTER (WHERE f.status = 'done') AS slices_done, count(*) AS slices_total,
               coalesce(sum(f.rows), 0)::bigint AS rows,
               bool_or(f.finished_at IS NULL AND f.planned_at > now() - %(full_load_timeout)s) AS unfinished
        FROM objects o JOIN sfsync.full_load_slices f ON f.sobject = o.sobject
        GROUP BY f.sobject, f.run_id
    ) runs
    WHERE unfinished
    ORDER BY sobject, planned_at DESC
)
SELECT o.sobject,
       last.run_id, last.direction, last.status, last.started_at, last.finished_at, last.message,
       ok.finished_at AS last_success_at,
       extract(epoch FROM now() - s.watermark)::float8 AS lag_seconds,
       coalesce(day.rows_in, 0) AS rows_in, coalesce(day.rows_out, 0) AS rows_out,
       coalesce(day.api_calls, 0) AS api_calls,
       coalesce(backlog.pending, 0) AS backlog, backlog.oldest,
       coalesce(errors.open, 0) AS open_errors,
       loading.run_id AS load_run_id, loading.slices_done, loading.slices_total, loading.rows AS load_rows
FROM objects o
LEFT JOIN LATERAL (
    SELECT r.run_id, r.direction, r.status, r.started_at, r.finished_at, r.message FROM sfsync.sync_runs r
    WHERE r.sobject = o.sobject ORDER BY r.started_at DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT r.finished_at FROM sfsync.sync_runs r
    WHERE r.sobject = o.sobject AND r.status IN ('merged', 'reconciled', 'pushed')
    ORDER BY r.started_at DESC LIMIT 1
) ok ON true
LEFT JOIN sfsync.sync_state s ON s.sobject = o.sobject
LEFT JOIN day ON day.sobject = o.sobject
LEFT JOIN backlog ON backlog.sobject = o.sobject
LEFT JOIN errors ON errors.sobject = o.sobject
LEFT JOIN loading ON loading.sobject = o.sobject
ORDER BY o.sobject
