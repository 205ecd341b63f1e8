-- One line per warehouse row with unpushed changes: what happened to it, and the latest value written to
-- each changed column (the writer's value, even if a pull has since shown Salesforce's in the row). Rows
-- whose last push failed permanently wait until they change again (someone fixed them).
SELECT o.row_id,
       max(o.change_id) AS change_id,
       (array_agg(o.operation ORDER BY o.change_id DESC))[1] AS last_operation,
       bool_or(o.operation = 'insert') AS inserted,
       (array_agg(o.sfid ORDER BY o.change_id DESC))[1] AS sfid,
       (SELECT jsonb_object_agg(latest.key, latest.value) FROM (
            SELECT DISTINCT ON (k.key) k.key, k.value -> 'new' AS value
            FROM sfsync.outbox c, jsonb_each(c.changed) AS k
            WHERE c.sobject = %(sobject)s AND c.row_id = o.row_id AND c.pushed_at IS NULL
            ORDER BY k.key, c.change_id DESC) AS latest) AS changes
FROM sfsync.outbox o
LEFT JOIN sfsync.sync_errors e ON e.sobject = o.sobject AND e.row_id = o.row_id
WHERE o.sobject = %(sobject)s AND o.pushed_at IS NULL
GROUP BY o.row_id, e.transient, e.change_id
HAVING e.change_id IS NULL OR e.transient OR max(o.change_id) > e.change_id
ORDER BY o.row_id
