-- Merge one staged window into its object table; merge/on_conflict.sql applies a record already there only
-- where Salesforce's SystemModstamp is newer than the stored one. A record deleted in Salesforce stays as a
-- row flagged isdeleted, with the time the sync first saw the delete. Objects without IsDeleted (User) keep
-- the column's default, false. When none of the staged Ids is in the table yet (a first run, a full-load
-- slice), that clause is left out: every row is new, and plain inserts save ON CONFLICT's speculative
-- insertion of each row (about a quarter of the statement's time).
-- A staged window holds each Id once (one query's result, restaged from scratch on every attempt); were
-- that ever broken, the merge fails loudly (ON CONFLICT cannot affect a row twice, a plain insert violates
-- the unique id) rather than pick a version.
WITH incoming AS (
    SELECT {columns} FROM {staging}
), merged AS (
    INSERT INTO {target} AS t ({columns}, _sfsync_synced_at, _sfsync_deleted_at)
    SELECT {columns}, now(), CASE WHEN {deleted} THEN now() END FROM incoming
    {on_conflict}
    RETURNING (xmax = 0) AS inserted, isdeleted
)
SELECT
    (SELECT count(*) FROM incoming) AS incoming,
    count(*) FILTER (WHERE inserted AND NOT isdeleted) AS new,
    count(*) FILTER (WHERE NOT inserted AND NOT isdeleted) AS updated,
    count(*) FILTER (WHERE isdeleted) AS deleted
FROM merged
