-- A watcher's state as it last noted it (sfsync.watchers.Record). Its times come as ages relative to now(),
-- so the triggerer's clock never matters; wakes are those since its last write, added to the count.
INSERT INTO sfsync.watchers AS w (sobject, source, state, since, error, retry_at, woken_at, wakes, checked_at)
VALUES (%(sobject)s, %(source)s, %(state)s, now() - %(since_age)s::interval, %(error)s,
        now() + %(retry_in)s::interval, now() - %(woken_age)s::interval, %(wakes)s, now())
ON CONFLICT (sobject, source) DO UPDATE SET
    state = excluded.state,
    -- The same state, heard from without a gap (a heartbeat, another failure, a restarted triggerer that
    -- fails as it failed before): it began back then.
    since = CASE WHEN w.state = excluded.state AND w.checked_at >= now() - %(silent)s::interval
                 THEN w.since ELSE excluded.since END,
    error = coalesce(excluded.error, w.error),
    retry_at = excluded.retry_at,
    woken_at = coalesce(excluded.woken_at, w.woken_at),
    wakes = w.wakes + excluded.wakes,
    checked_at = excluded.checked_at
