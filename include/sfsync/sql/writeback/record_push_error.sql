-- A record Salesforce refused. Transient failures come back after a backoff that doubles with each
-- attempt, up to a cap; permanent ones wait until the row changes again. A new failure of an error a user
-- dismissed opens it again.
INSERT INTO sfsync.sync_errors AS e
    (sobject, row_id, sfid, operation, status_code, message, fields, transient, change_id, next_attempt_at)
VALUES (%(sobject)s, %(row_id)s, %(sfid)s, %(operation)s, %(status_code)s, %(message)s, %(fields)s,
        %(transient)s, %(change_id)s, now() + make_interval(secs => least(%(retry_after)s, %(retry_cap)s)))
ON CONFLICT (sobject, row_id) DO UPDATE SET
    sfid = excluded.sfid, operation = excluded.operation, status_code = excluded.status_code,
    message = excluded.message, fields = excluded.fields, transient = excluded.transient,
    change_id = excluded.change_id, attempts = e.attempts + 1, last_seen = now(),
    dismissed_at = NULL, dismissed_by = NULL,
    next_attempt_at = now() + make_interval(secs => least(%(retry_after)s * 2 ^ e.attempts, %(retry_cap)s))
