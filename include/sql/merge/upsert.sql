-- Merge one staged window into its object table. Applied only where Salesforce's SystemModstamp is newer
-- than the stored one, so replaying a window (a retry, the lookback) changes nothing. SystemModstamp has
-- whole seconds, so a record changed twice within one second keeps its stamp: a same-stamp version is
-- applied too when it differs. A record deleted in Salesforce stays as a row flagged isdeleted, with the
-- time the sync first saw the delete. Objects without IsDeleted (User) keep the column's default, false.
-- A staged window holds each Id once (one query's result, restaged from scratch on every attempt); were
-- that ever broken, ON CONFLICT fails the merge loudly rather than pick a version.
WITH incoming AS (
    SELECT {columns} FROM {staging}
), merged AS (
    INSERT INTO {target} AS t ({columns}, _sfsync_synced_at, _sfsync_deleted_at)
    SELECT {columns}, now(), CASE WHEN {deleted} THEN now() END FROM incoming
    ON CONFLICT (id) DO UPDATE SET
        {updates},
        _sfsync_synced_at = now(),
        _sfsync_deleted_at = CASE WHEN excluded.isdeleted THEN coalesce(t._sfsync_deleted_at, now()) END
    WHERE t.systemmodstamp IS NULL OR excluded.systemmodstamp > t.systemmodstamp
       OR (excluded.systemmodstamp = t.systemmodstamp AND ({stored}) IS DISTINCT FROM ({incoming}))
    RETURNING (xmax = 0) AS inserted, isdeleted
)
SELECT
    (SELECT count(*) FROM incoming) AS incoming,
    count(*) FILTER (WHERE inserted AND NOT isdeleted) AS new,
    count(*) FILTER (WHERE NOT inserted AND NOT isdeleted) AS updated,
    count(*) FILTER (WHERE isdeleted) AS deleted
FROM merged
