-- Write capture refuses, in the writer's own statement, a change Salesforce would refuse anyway: a column
-- the integration user may not create (on INSERT) or update (on UPDATE): Ids, system stamps, formulas,
-- fields it cannot see. Salesforce would reject the whole record, legitimate fields included, later and
-- out of sight. TG_ARGV: the object's API name; 'deletes' when warehouse deletes reach Salesforce; the
-- createable and the updateable columns, comma-separated (kept current by every pull's describe).
CREATE OR REPLACE FUNCTION sfsync.capture_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    diff jsonb;
    refused text;
BEGIN
    IF current_setting('sfsync.origin', true) = 'salesforce' THEN
        RETURN NULL;
    END IF;
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
    IF TG_OP <> 'DELETE' AND TG_NARGS >= 4 THEN
        SELECT string_agg(key, ', ' ORDER BY key) INTO refused
          FROM jsonb_object_keys(diff) AS key
         WHERE key <> ALL (string_to_array(CASE TG_OP WHEN 'INSERT' THEN TG_ARGV[2] ELSE TG_ARGV[3] END, ','));
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION '%.%: % cannot be %d in Salesforce by the sync''s user (%)', TG_TABLE_SCHEMA,
                TG_TABLE_NAME, refused, CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END, TG_ARGV[0]
                USING HINT = 'Ids, system fields, formulas and fields the integration user cannot see or edit are set by Salesforce; leave them out of the write.',
                      ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    INSERT INTO sfsync.outbox (sobject, row_id, sfid, operation, changed)
    VALUES (TG_ARGV[0], (coalesce(new_row, old_row) ->> '_sfsync_row_id')::bigint,
            coalesce(new_row, old_row) ->> 'id', lower(TG_OP), diff);
    RETURN NULL;
END
$$;
