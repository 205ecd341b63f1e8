-- Every unpushed change of the rows due for a push, oldest first, with the row as it is now (NULL once
-- deleted) and the code its last push failed with. A row is not due while its last push failed
-- permanently and nothing changed since (it waits for someone to fix it), nor while a transient failure
-- waits out its backoff. At most %(rows)s rows a push, those changed longest ago first: a huge backlog is
-- worked off over several runs.
WITH due AS (
    SELECT o.row_id, min(o.change_id) AS first_change, e.status_code AS last_error
    FROM sfsync.outbox o
    LEFT JOIN sfsync.sync_errors e ON e.sobject = o.sobject AND e.row_id = o.row_id
    WHERE o.sobject = %(sobject)s AND o.pushed_at IS NULL
    GROUP BY o.row_id, e.row_id, e.transient, e.next_attempt_at, e.change_id, e.status_code
    HAVING e.row_id IS NULL
        OR (e.transient AND e.next_attempt_at <= now())
        OR max(o.change_id) > e.change_id
    ORDER BY first_change
    LIMIT %(rows)s
)
SELECT o.row_id, o.change_id, o.operation, o.sfid, o.changed, to_jsonb(t) AS current, due.last_error
FROM due
JOIN sfsync.outbox o ON o.sobject = %(sobject)s AND o.row_id = due.row_id AND o.pushed_at IS NULL
LEFT JOIN {table} t ON t._sfsync_row_id = o.row_id
ORDER BY o.row_id, o.change_id
