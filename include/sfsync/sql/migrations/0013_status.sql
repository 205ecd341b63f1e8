-- The status page and its actions. Run history is read by object and time (recent runs, the last 24 hours,
-- charts) and pruned by time; decided conflicts by object and time.
CREATE INDEX sync_runs_by_object ON sfsync.sync_runs (sobject, started_at DESC);
CREATE INDEX sync_runs_by_time ON sfsync.sync_runs (started_at);
CREATE INDEX conflicts_by_object ON sfsync.conflicts (sobject, decided_at DESC);
CREATE INDEX conflicts_by_time ON sfsync.conflicts (decided_at);

-- An error a user marked handled no longer counts as open; it is still retried, and a new failure of its
-- row opens it again.
ALTER TABLE sfsync.sync_errors ADD COLUMN dismissed_at timestamptz, ADD COLUMN dismissed_by text;

-- What users did on the status page (sync now, retry now, dismiss): who, when, to what.
CREATE TABLE sfsync.actions (
    action_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action     text NOT NULL,
    sobject    text NOT NULL,
    row_id     bigint,
    username   text NOT NULL,
    detail     text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_by_time ON sfsync.actions (at);

-- Alerts raised on an object (its lag or open errors passed the registry's threshold): a notifier is called
-- when one is raised, not again while it stays raised, and it is cleared when the cause goes away.
CREATE TABLE sfsync.alerts (
    sobject     text NOT NULL,
    cause       text NOT NULL CHECK (cause IN ('lag', 'errors')),
    message     text NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz
);
CREATE UNIQUE INDEX alerts_raised ON sfsync.alerts (sobject, cause) WHERE cleared_at IS NULL;
