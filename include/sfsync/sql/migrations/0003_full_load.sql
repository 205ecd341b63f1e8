-- One row per object and slice of a full load run. While a run has unfinished rows for an object, that
-- object's incremental DAG skips its runs; when the run finishes, the incremental sync continues from
-- the watermark taken before the copy started, so nothing changed during the copy is missed.
CREATE TABLE sfsync.full_load_slices (
    run_id        text NOT NULL,
    sobject       text NOT NULL,
    slice_start   timestamptz NOT NULL,
    slice_end     timestamptz NOT NULL,
    watermark     timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'planned',
    rows          bigint,
    api_calls     integer NOT NULL DEFAULT 0,
    attempts      integer NOT NULL DEFAULT 0,
    error         text,
    planned_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (run_id, sobject, slice_start)
);

-- Who set the watermark last: the incremental sync ('incremental') or a full load's hand-over
-- ('full_load'). A full load may only lower an incremental watermark; successive backfill slices then
-- raise it to the end of what they covered.
ALTER TABLE sfsync.sync_state ADD COLUMN high_water_source text NOT NULL DEFAULT 'incremental';
