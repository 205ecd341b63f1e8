-- An object's runs in time buckets (every bucket of the period, empty ones too): rows in and out, the
-- pull's mean duration and the API calls. The runs are read once, by the (sobject, started_at) index.
WITH since AS (SELECT date_bin(%(bucket)s, now() - %(period)s, 'epoch') AS at),
runs AS (
    SELECT date_bin(%(bucket)s, r.started_at, 'epoch') AS at,
           sum(r.written) FILTER (WHERE r.direction <> 'outbound') AS rows_in,
           sum(r.written) FILTER (WHERE r.direction = 'outbound') AS rows_out,
           avg(extract(epoch FROM r.duration)) FILTER (WHERE r.direction = 'inbound') AS seconds,
           sum(r.api_calls) AS api_calls
    FROM sfsync.sync_runs r
    WHERE r.sobject = %(sobject)s AND r.started_at >= (SELECT at FROM since)
    GROUP BY 1
)
SELECT b.at, coalesce(runs.rows_in, 0)::bigint AS rows_in, coalesce(runs.rows_out, 0)::bigint AS rows_out,
       coalesce(runs.seconds, 0)::float8 AS seconds, coalesce(runs.api_calls, 0)::bigint AS api_calls
FROM generate_series((SELECT at FROM since), now(), %(bucket)s) AS b(at)
LEFT JOIN runs ON runs.at = b.at
ORDER BY b.at
