-- A staged record already in the table replaces it only where it is newer, so replaying a window (a retry,
-- the lookback) changes nothing. SystemModstamp has whole seconds, so a record changed twice within one
-- second keeps its stamp: a same-stamp version is applied too when it differs.
ON CONFLICT (id) DO UPDATE SET
    {updates},
    _sfsync_synced_at = now(),
    _sfsync_deleted_at = CASE WHEN excluded.isdeleted THEN coalesce(t._sfsync_deleted_at, now()) END
WHERE t.systemmodstamp IS NULL OR excluded.systemmodstamp > t.systemmodstamp
   OR (excluded.systemmodstamp = t.systemmodstamp AND ({stored}) IS DISTINCT FROM ({incoming}))
