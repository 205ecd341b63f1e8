-- Never moves backwards: a late retry of an old window cannot undo a newer run's progress.
INSERT INTO sfsync.sync_state AS s (sobject, high_water, updated_at)
VALUES (%(sobject)s, %(high_water)s, now())
ON CONFLICT (sobject) DO UPDATE
SET high_water = greatest(s.high_water, excluded.high_water), updated_at = now()
