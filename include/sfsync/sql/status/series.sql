-- An object's runs in time buckets (every bucket of the period, empty ones too): rows in and out, the
-- pull's mean duration and the API calls.
WITH buckets AS (
    SELECT generate_series(date_bin(%(bucket)s, now() - %(period)s, 'epoch'), now(), %(bucket)s) AS at
)
SELECT b.at,
       coalesce(sum(r.written) FILTER (WHERE r.direction <> 'outbound'), 0)::bigint AS rows_in,
       coalesce(sum(r.written) FILTER (WHERE r.direction = 'outbound'), 0)::bigint AS rows_out,
       coalesce(avg(extract(epoch FROM r.duration)) FILTER (WHERE r.direction = 'inbound'), 0)::float8 AS seconds,
       coalesce(sum(r.api_calls), 0)::bigint AS api_calls
FROM buckets b
LEFT JOIN sfsync.sync_runs r
    ON r.sobject = %(sobject)s AND r.started_at >= b.at AND r.started_at < b.at + %(bucket)s
GROUP BY b.at
ORDER BY b.at
