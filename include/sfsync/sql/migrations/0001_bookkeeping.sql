-- Synced objects live in schema salesforce (one table per object, created from describe by the sync);
-- the sync's own bookkeeping lives in schema sfsync, so no object table can clash with it.
CREATE SCHEMA IF NOT EXISTS salesforce;

-- One row per object: the SystemModstamp up to which the warehouse is complete. It is advanced in the same
-- transaction as the merge that made it true, so a crash or a retry can never skip or double-apply a window.
CREATE TABLE sfsync.sync_state (
    sobject     text PRIMARY KEY,
    high_water  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
