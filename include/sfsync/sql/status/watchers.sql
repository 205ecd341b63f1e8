-- The event watchers of %(objects)s as they last recorded themselves, and how long ago that was (by the
-- warehouse's clock, which wrote it).
SELECT sobject, source, state, since, error, retry_at, woken_at, wakes, checked_at,
       extract(epoch FROM now() - checked_at)::float8 AS silent_seconds
FROM sfsync.watchers
WHERE sobject = ANY(%(objects)s::text[])
