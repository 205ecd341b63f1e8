-- Write guards, part 3: only the sync's own database role writes as the sync.
--
-- sfsync.origin is a session setting anyone may SET, so it alone cannot mark the sync's writes: the
-- triggers' WHEN clauses (warehouse._guard_writes) now also require the sync's role, baked in as a
-- literal, and the functions below no longer let anything through themselves. Editors of the
-- bidirectional tables need no privilege on sfsync: the capture runs as the function's owner (the sync),
-- with a fixed search_path so a writer's own objects cannot stand in for pg_catalog's or sfsync's.

-- TG_ARGV: the object's API name, and 'deletes' when the registry lets warehouse deletes reach Salesforce.
-- The sobject comes from the trigger, which only the table's owner attaches: an editor of one table cannot
-- write a change for another object.
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
    RETURN NULL;
END
$$;

-- Fires only for writers other than the sync (the trigger's WHEN clause): roles that hold privileges on
-- a table synced from Salesforce only (its owner, superusers) still get a clear error.
CREATE OR REPLACE FUNCTION sfsync.refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is synced from Salesforce only (%): change % in Salesforce instead',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0]
        USING HINT = 'Only Lead, Contact, Campaign and CampaignMember are written back to Salesforce.',
              ERRCODE = 'insufficient_privilege';
END
$$;

-- TRUNCATE fires no row trigger, so it would empty a bidirectional table without a change captured and
-- leave pending outbox entries pointing at rows that are gone.
CREATE FUNCTION sfsync.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.%: TRUNCATE is not written back to Salesforce (%)', TG_TABLE_SCHEMA, TG_TABLE_NAME,
        TG_ARGV[0]
        USING HINT = 'Use DELETE, which is written back where the sfsync registry allows deletes, or delete the records in Salesforce.',
              ERRCODE = 'insufficient_privilege';
END
$$;

-- Functions are executable by PUBLIC by default. A trigger fires its function without that privilege,
-- but attaching one needs it: nobody but the sync attaches the capture to a table of their own.
REVOKE EXECUTE ON FUNCTION sfsync.capture_change(), sfsync.refuse_write(), sfsync.refuse_unwritable(),
    sfsync.refuse_truncate() FROM PUBLIC;

-- Until now an editor of a bidirectional table needed INSERT on sfsync.outbox (the capture ran with the
-- writer's privileges), and with it could queue any change for any object. Only the sync writes its own
-- bookkeeping now: every write privilege on sfsync's tables and sequences that another role holds (on the
-- table or on columns of it) goes, with what they granted others in turn (CASCADE); reads stay.
DO $$
DECLARE
    held record;
BEGIN
    FOR held IN
        SELECT DISTINCT c.oid::regclass AS relation, c.relkind = 'S' AS sequence,
               CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'sfsync'
          CROSS JOIN LATERAL (
              SELECT * FROM aclexplode(c.relacl)
              UNION ALL
              SELECT e.* FROM pg_attribute a, aclexplode(a.attacl) AS e
               WHERE a.attrelid = c.oid AND a.attnum > 0
          ) AS acl
          LEFT JOIN pg_roles r ON r.oid = acl.grantee
         WHERE acl.grantee <> c.relowner AND acl.privilege_type <> 'SELECT'
    LOOP
        IF held.sequence THEN
            EXECUTE format('REVOKE USAGE, UPDATE ON SEQUENCE %s FROM %s CASCADE',
                           held.relation, held.grantee);
        ELSE
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s'
                           ' CASCADE', held.relation, held.grantee);
        END IF;
    END LOOP;
END
$$;

-- The roles the sync gives access to the object tables, kept by whoever administers the warehouse (as the
-- sync's role): each object table the sync creates or changes grants them what they lack. 'read': SELECT
-- on every salesforce table; 'edit': that, and INSERT, UPDATE, DELETE on the bidirectional ones. Roles
-- are cluster-wide while this list is per warehouse, so two warehouses on one server keep apart.
CREATE TABLE sfsync.access (
    grantee  text PRIMARY KEY,
    access   text NOT NULL CHECK (access IN ('read', 'edit'))
);
