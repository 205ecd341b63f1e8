-- Write-back, part 2: conflicts decided per field and kept for inspection, transient failures retried
-- with backoff, pushes redirected to a surviving record, and a key that names this warehouse.

-- One row: this warehouse's identity. A row's key in Salesforce's external Id field is derived from it,
-- so two warehouses writing to one org never claim each other's records.
CREATE TABLE sfsync.installation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO sfsync.installation DEFAULT VALUES;

-- The record a change was written to when it was not the row's own: a merge's survivor, or the contact a
-- lead was converted into.
ALTER TABLE sfsync.outbox ADD COLUMN pushed_to text;
-- A push reads and settles pending changes by row.
CREATE INDEX outbox_pending_rows ON sfsync.outbox (sobject, row_id) WHERE pushed_at IS NULL;

ALTER TABLE sfsync.sync_errors ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();

-- A field changed on both sides since the last sync, and which side's value was kept (the registry's
-- rule), or a field a redirected change could not carry.
CREATE TABLE sfsync.conflicts (
    conflict_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sobject           text NOT NULL,
    row_id            bigint NOT NULL,
    change_id         bigint NOT NULL,
    sfid              text,
    field             text NOT NULL,
    base_value        jsonb,
    warehouse_value   jsonb,
    salesforce_value  jsonb,
    winner            text NOT NULL CHECK (winner IN ('warehouse', 'salesforce')),
    reason            text NOT NULL,
    decided_at        timestamptz NOT NULL DEFAULT now()
);
-- A push retried after a crash decides the same conflicts again: they are recorded once.
CREATE UNIQUE INDEX conflicts_once ON sfsync.conflicts (sobject, row_id, change_id, field);

ALTER TABLE sfsync.sync_runs ADD COLUMN written integer GENERATED ALWAYS AS (new + updated + deleted) STORED;
