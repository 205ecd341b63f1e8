-- Record-level failures of the write-back, with Salesforce's own status code and message. A row stays
-- here until a later push of it succeeds; transient codes are retried every run, permanent ones once the
-- row changes again (someone fixed it).
CREATE TABLE sfsync.sync_errors (
    sobject      text NOT NULL,
    row_id       bigint NOT NULL,
    sfid         text,
    operation    text NOT NULL,
    status_code  text NOT NULL,
    message      text NOT NULL,
    fields       text[] NOT NULL DEFAULT '{}',
    transient    boolean NOT NULL,
    change_id    bigint NOT NULL,
    attempts     integer NOT NULL DEFAULT 1,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sobject, row_id)
);
