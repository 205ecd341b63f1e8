-- After a full load run copied an object, the incremental sync continues from the earlier of the org's
-- clock when the run started and the end of the CreatedDate range it copied: every change after that
-- point is pulled again, and everything before it is in the copy.
INSERT INTO sfsync.sync_state AS s (sobject, watermark, watermark_source, updated_at)
VALUES (%(sobject)s, %(watermark)s, 'full_load', now())
ON CONFLICT (sobject) DO UPDATE SET
    watermark = CASE
        WHEN s.watermark IS NULL THEN excluded.watermark
        WHEN s.watermark_source = 'full_load' THEN greatest(s.watermark, excluded.watermark)
        ELSE least(s.watermark, excluded.watermark)
    END,
    watermark_source = 'full_load',
    updated_at = now()
