-- Write-back capture. Every INSERT, UPDATE or DELETE that another writer makes on a bidirectional table
-- lands in sfsync.outbox in the same transaction: changed columns only, with old and new values. The sync's
-- own writes run with sfsync.origin = 'salesforce' and are not captured, so nothing echoes back.
CREATE TABLE sfsync.outbox (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sobject     text NOT NULL,
    row_id      bigint NOT NULL,
    sfid        text,
    operation   text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    changed     jsonb NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    pushed_at   timestamptz
);
CREATE INDEX outbox_pending ON sfsync.outbox (sobject, change_id) WHERE pushed_at IS NULL;

-- TG_ARGV: the object's API name, and 'deletes' when the registry lets warehouse deletes reach Salesforce.
CREATE FUNCTION sfsync.capture_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    diff jsonb;
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
    INSERT INTO sfsync.outbox (sobject, row_id, sfid, operation, changed)
    VALUES (TG_ARGV[0], (coalesce(new_row, old_row) ->> '_sfsync_row_id')::bigint,
            coalesce(new_row, old_row) ->> 'id', lower(TG_OP), diff);
    RETURN NULL;
END
$$;

-- Salesforce-to-warehouse tables take writes from the sync only: anything else would be silently
-- overwritten by the next run, so it is refused with a clear error instead.
CREATE FUNCTION sfsync.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sfsync.origin', true) = 'salesforce' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '%.% is synced from Salesforce only (%): change % in Salesforce instead',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0]
        USING HINT = 'Only Lead, Contact, Campaign and CampaignMember are written back to Salesforce.',
              ERRCODE = 'insufficient_privilege';
END
$$;
