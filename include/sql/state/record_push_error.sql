INSERT INTO sfsync.sync_errors AS e
    (sobject, row_id, sfid, operation, status_code, message, fields, transient, change_id)
VALUES (%(sobject)s, %(row_id)s, %(sfid)s, %(operation)s, %(status_code)s, %(message)s, %(fields)s,
        %(transient)s, %(change_id)s)
ON CONFLICT (sobject, row_id) DO UPDATE SET
    sfid = excluded.sfid, operation = excluded.operation, status_code = excluded.status_code,
    message = excluded.message, fields = excluded.fields, transient = excluded.transient,
    change_id = excluded.change_id, attempts = e.attempts + 1, last_seen = now()
