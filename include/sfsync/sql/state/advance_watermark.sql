-- Never moves backwards: a late retry of an old window cannot undo a newer run's progress.
INSERT INTO sfsync.sync_state AS s (sobject, watermark, watermark_source, updated_at)
VALUES (%(sobject)s, %(watermark)s, 'incremental', now())
ON CONFLICT (sobject) DO UPDATE
SET watermark = greatest(s.watermark, excluded.watermark), watermark_source = 'incremental', updated_at = now()
