-- What each sync run did, one row per run and object, written in the transaction that merged its data.
CREATE TABLE sfsync.sync_runs (
    run_id        text NOT NULL,
    sobject       text NOT NULL,
    direction     text NOT NULL DEFAULT 'inbound',
    status        text NOT NULL,
    window_start  timestamptz,
    window_end    timestamptz,
    new           integer NOT NULL DEFAULT 0,
    updated       integer NOT NULL DEFAULT 0,
    deleted       integer NOT NULL DEFAULT 0,
    skipped       integer NOT NULL DEFAULT 0,
    failed        integer NOT NULL DEFAULT 0,
    api_calls     integer NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    message       text,
    PRIMARY KEY (run_id, sobject, direction)
);

-- The org's API usage as last reported by Salesforce (the Sforce-Limit-Info header): the budget guard
-- reads it before a run spends any call.
CREATE TABLE sfsync.api_usage (
    org         text PRIMARY KEY,
    used        integer NOT NULL,
    max         integer NOT NULL,
    seen_at     timestamptz NOT NULL
);

ALTER TABLE sfsync.sync_state ADD COLUMN last_reconciled_at timestamptz;
