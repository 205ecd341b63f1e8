-- After a full load run copied an object, the incremental sync continues from the earlier of the org's
-- clock when the run started and the end of the CreatedDate range it copied: every change after that
-- point is pulled again, and everything before it is in the copy.
INSERT INTO sfsync.sync_state AS s (sobject, high_water, high_water_source, updated_at)
VALUES (%(sobject)s, %(watermark)s, 'full_load', now())
ON CONFLICT (sobject) DO UPDATE SET
    high_water = CASE
        WHEN s.high_water IS NULL THEN excluded.high_water
        WHEN s.high_water_source = 'full_load' THEN greatest(s.high_water, excluded.high_water)
        ELSE least(s.high_water, excluded.high_water)
    END,
    high_water_source = 'full_load',
    updated_at = now()
