-- Event-driven write-back: every captured change also notifies channel sfsync_outbox_<table>, so a watcher
-- LISTENing there (sfsync.events.WarehouseNotifyTrigger) wakes the object's DAG within seconds instead of at
-- its next scheduled run. Postgres delivers a notification when the writer's transaction commits (never
-- for one rolled back) and merges identical ones within a transaction: a statement that changes 10,000
-- rows notifies once. The sync's own writes never reach this function (its trigger's WHEN clause), so they
-- wake nothing. The payload is empty: the outbox is what the push reads; the notification only wakes it.
-- Everything else is 0010's function unchanged, its security settings included.
CREATE OR REPLACE FUNCTION sfsync.capture_change() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    diff jsonb;
BEGIN
    old_row := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    IF TG_OP = 'DELETE' AND TG_ARGV[1] IS DISTINCT FROM 'deletes' THEN
        RAISE EXCEPTION '%: deleting rows is not written back to Salesforce for %', TG_TABLE_NAME, TG_ARGV[0]
            USING HINT = 'Delete the record in Salesforce, or allow deletes for this object in the sfsync registry.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT coalesce(jsonb_object_agg(key, jsonb_build_object('old', old_row -> key, 'new', new_row -> key)), '{}')
      INTO diff
      FROM jsonb_object_keys(coalesce(new_row, old_row)) AS key
     WHERE key NOT LIKE '\_sfsync\_%'
       AND coalesce(old_row -> key, 'null') IS DISTINCT FROM coalesce(new_row -> key, 'null');
    IF TG_OP = 'UPDATE' AND diff = '{}' THEN
        RETURN NULL;
    END IF;
    INSERT INTO sfsync.outbox (sobject, row_id, sfid, operation, changed)
    VALUES (TG_ARGV[0], (coalesce(new_row, old_row) ->> '_sfsync_row_id')::bigint,
            coalesce(new_row, old_row) ->> 'id', lower(TG_OP), diff);
    PERFORM pg_notify('sfsync_outbox_' || TG_TABLE_NAME, '');
    RETURN NULL;
END
$$;
