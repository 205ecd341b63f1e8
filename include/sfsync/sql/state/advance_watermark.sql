-- Never moves backwards: a late retry of an old window cannot undo a newer run's progress.
INSERT INTO sfsync.sync_state AS s (sobject, high_water, high_water_source, updated_at)
VALUES (%(sobject)s, %(watermark)s, 'incremental', now())
ON CONFLICT (sobject) DO UPDATE
SET high_water = greatest(s.high_water, excluded.high_water), high_water_source = 'incremental', updated_at = now()
