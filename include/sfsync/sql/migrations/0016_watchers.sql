-- The event watchers (sfsync.events), as each last said of itself (sfsync.watchers.Record): whether it
-- follows its source or fails (the last error in words, and when it tries again), its last wake and how
-- many, and a heartbeat. The status page reads it: a watcher failing, or silent (the triggerer is not
-- running it), leaves its object to its schedule alone. One row a watcher, upserted; times are the
-- warehouse's clock.
--
-- The triggerer writes it through the sync's own connection (marketing_warehouse), as the sync's role,
-- which owns the table: like the rest of sfsync's bookkeeping (0010), no other role is granted writes.
CREATE TABLE sfsync.watchers (
    sobject     text NOT NULL,
    source      text NOT NULL CHECK (source IN ('change_events', 'warehouse_edits')),
    state       text NOT NULL CHECK (state IN ('following', 'failing')),
    since       timestamptz NOT NULL,
    error       text,
    retry_at    timestamptz,
    woken_at    timestamptz,
    wakes       bigint NOT NULL DEFAULT 0,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sobject, source)
);
