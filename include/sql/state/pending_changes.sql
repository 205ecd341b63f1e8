-- Every unpushed change of the rows due for a push, oldest first, with the row as it is now (NULL once
-- deleted). A row is not due while its last push failed permanently and nothing changed since (it waits
-- for someone to fix it), nor while a transient failure waits out its backoff.
SELECT o.row_id, o.change_id, o.operation, o.sfid, o.changed, to_jsonb(t) AS current
FROM sfsync.outbox o
LEFT JOIN {table} t ON t._sfsync_row_id = o.row_id
LEFT JOIN sfsync.sync_errors e ON e.sobject = o.sobject AND e.row_id = o.row_id
WHERE o.sobject = %(sobject)s AND o.pushed_at IS NULL
  AND (e.row_id IS NULL
       OR (e.transient AND e.next_attempt_at <= now())
       OR EXISTS (SELECT FROM sfsync.outbox n
                  WHERE n.sobject = o.sobject AND n.row_id = o.row_id AND n.pushed_at IS NULL
                    AND n.change_id > e.change_id))
ORDER BY o.row_id, o.change_id
