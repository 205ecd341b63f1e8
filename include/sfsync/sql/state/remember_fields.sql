INSERT INTO sfsync.sync_state AS s (sobject, fields, updated_at) VALUES (%(sobject)s, %(fields)s, now())
ON CONFLICT (sobject) DO UPDATE SET fields = excluded.fields, updated_at = now()
