-- A write to a column Salesforce would refuse is refused in the writer's own statement: a column the
-- integration user may not create (on INSERT) or update (on UPDATE): Ids, system stamps, formulas, fields
-- it cannot see. Salesforce would otherwise reject the whole record, legitimate fields included, later and
-- out of sight. TG_ARGV: the object's API name, then its createable and its updateable columns,
-- comma-separated (kept current by every pull's describe).
CREATE FUNCTION sfsync.refuse_unwritable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) ELSE '{}' END;
    new_row jsonb := to_jsonb(NEW);
    refused text;
BEGIN
    SELECT string_agg(key, ', ' ORDER BY key) INTO refused
      FROM jsonb_each(new_row) AS changed(key, value)
     WHERE key NOT LIKE '\_sfsync\_%'
       AND value IS DISTINCT FROM coalesce(old_row -> key, 'null')
       AND key <> ALL (string_to_array(CASE TG_OP WHEN 'INSERT' THEN TG_ARGV[1] ELSE TG_ARGV[2] END, ','));
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%.%: % cannot be %d in Salesforce by the sync''s user (%)', TG_TABLE_SCHEMA,
            TG_TABLE_NAME, refused, CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END, TG_ARGV[0]
            USING HINT = 'Ids, system fields, formulas and fields the integration user cannot see or edit are set by Salesforce; leave them out of the write.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
