"""Salesforce to warehouse: one incremental run of one object.

``extract`` reads the delta window through queryAll (deletes arrive as ``IsDeleted`` records) into a
per-run staging table; ``merge`` applies it to ``salesforce.<object>`` and advances the watermark in the
same transaction. A large window into a table without Ids yet (a first run) skips both: ``extract`` COPYs
the Bulk results straight into the table and finishes the run in one transaction. ``reconcile``
periodically flags records that left Salesforce without a trace (hard deletes, recycle-bin purges,
records that became invisible). Each step is safe to retry: the window is frozen in ``sfsync.sync_runs``
when the run first starts, and a merged run is never merged twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import quote_plus

import psycopg
from psycopg import sql

from sfsync import locks, soql, state, warehouse, warehouse_key
from sfsync.registry import SyncObject, SyncSettings
from sfsync.salesforce import BulkResults, Salesforce

log = logging.getLogger(__name__)

INBOUND, RECONCILE = "inbound", "reconcile"
BULK_PAGE_RECORDS = 50_000
_IDS_PER_QUERY = 200  # Ids in one SOQL IN list, at most
_QUERY_URL_CHARS = 12_000  # a REST query travels in its URL: Salesforce refuses URLs of about 16,000
#: A usage reading over the budget is checked with the org again once it is this old: runs that skip make
#: no call, so nothing else would ever refresh it; younger readings are trusted (objects share them).
USAGE_FRESH = timedelta(seconds=60)


def extract(
    entry: SyncObject, settings: SyncSettings, run_id: str, sf_conn_id: str, wh_conn_id: str
) -> dict[str, Any]:
    """Stage this run's window of changes; return what ``merge`` needs (a reference, never rows)."""
    key = state.RunKey(run_id, entry.sobject, INBOUND)
    with warehouse.connect(wh_conn_id) as conn:
        # Checked before taking the lock too: a full load's slices share it for hours, and a pull queued
        # for it would hold its pool slot, and queue the next slices behind it.
        if not state.find_run(conn, key) and (waiting := _waiting_for_full_load(conn, entry)):
            return waiting
        with locks.holding(conn, entry.sobject, INBOUND):
            return _extract(conn, entry, settings, key, sf_conn_id)


def _extract(
    conn: psycopg.Connection, entry: SyncObject, settings: SyncSettings, key: state.RunKey, sf_conn_id: str
) -> dict[str, Any]:
    """``extract``, once the object's inbound lock is held."""
    run = state.find_run(conn, key)
    if run and run.status != "extracting":  # skipped, or finished by an attempt that died unreported
        return run.summary()
    if not run and (waiting := _waiting_for_full_load(conn, entry)):
        return waiting
    sf = None
    if not run:
        _abandon_stale_runs(conn, entry, key)
        reason, sf = _over_budget(conn, settings, entry, sf_conn_id)
        if reason:
            log.warning("%s: skipping extraction: %s", entry.sobject, reason)
            state.start_run(conn, key, "skipping")
            state.finish_run(conn, key, "skipped", {}, sf.meter.calls if sf else 0, reason)
            return {"status": "skipped"}
    sf = sf or Salesforce(sf_conn_id, settings.bulk_deadline)
    low, upper = _window(conn, entry, settings, key, run, sf)  # the org's clock, read at login
    known = state.object_state(conn, entry.sobject).fields
    if known and low is not None:
        # The usual run: describe and the delta with the last run's fields, in one composite call.
        asked = soql.delta_query(entry.sobject, known, entry.cursor_field, low, upper)
    else:
        # A first run, likely large: a count tells whether it goes through Bulk, where a first REST page
        # would take as long and then be read again by the Bulk job.
        asked = soql.count_of(soql.delta_query(entry.sobject, ["Id"], entry.cursor_field, low, upper))
        asked += f" LIMIT {entry.bulk_threshold + 1}"
    describe, probe = sf.describe_and_query(entry.sobject, asked, entry.page_size)
    columns, warnings = warehouse.prepare_object_table(conn, entry, describe)
    if warnings:
        state.note(conn, key, "; ".join(warnings))
    fields = [c.field for c in columns]
    added = set(fields) - set(known or fields)
    reread = bool(added and low is not None)
    if reread:
        # A field new to the sync (created, made visible, or added to the registry) holds values in
        # records that will not change for it: this run reads every record again, and the merge fills the
        # column in. The run's window says so, for its retries; the new field list is remembered only
        # when the run is merged, so a run that never gets there leaves the next one to read it all.
        low = None
        state.read_all_again(conn, key)
        log.info("%s: new fields %s: reading every record again", entry.sobject, ", ".join(sorted(added)))
    names = [c.name for c in columns]
    staging = warehouse.staging_table(entry.table, key.run_id)
    query = soql.delta_query(entry.sobject, fields, entry.cursor_field, low, upper)
    if probe is not None and (reread or (probe["records"] and asked != query)):  # not this query's
        probe = None
    source = _source(sf, entry, query, probe)
    if (
        isinstance(source, BulkResults)
        and not warehouse.holds_ids(conn, entry.table)
        and not warehouse_key.waiting(conn, entry.table)  # rows a push created records for: adopt them
    ):
        merged = _copy_first(conn, sf, entry, key, fields, names, source, staging)
        if merged is not None:
            _record_usage(conn, sf, sf_conn_id)
            return merged
    warehouse.create_staging(conn, entry.table, staging, names)
    rows = _stage(conn, staging, names, source)
    _record_usage(conn, sf, sf_conn_id)
    state.add_calls(conn, key, sf.meter.calls)
    log.info(
        "%s: staged %d records of [%s, %s) with %d API calls", entry.sobject, rows, low, upper, sf.meter.calls
    )
    return {
        "status": "extracted",
        "staging": staging,
        "columns": names,
        "fields": fields,
        "rows": rows,
        "upper": upper.isoformat(),
    }


def merge(
    entry: SyncObject, settings: SyncSettings, run_id: str, extracted: dict[str, Any], wh_conn_id: str
) -> dict[str, Any]:
    """Apply the staged window and advance the watermark, atomically; return the run's counters."""
    key = state.RunKey(run_id, entry.sobject, INBOUND)
    with (
        warehouse.connect(wh_conn_id) as conn,
        locks.holding(conn, entry.sobject, INBOUND),
        conn.transaction(),
    ):
        run = state.find_run(conn, key)
        assert run is not None
        if run.status != "extracting":  # skipped, abandoned, or finished by the fast path or a lost attempt
            return run.summary()
        staging, names = extracted["staging"], extracted["columns"]
        counters = warehouse_key.merge_staged(conn, entry, settings.warehouse_key_column, staging, names)
        return _complete(conn, entry, key, run, counters, 0, staging, extracted.get("fields"))


def _copy_first(
    conn: psycopg.Connection,
    sf: Salesforce,
    entry: SyncObject,
    key: state.RunKey,
    fields: list[str],
    names: list[str],
    results: BulkResults,
    staging: str,
) -> dict[str, Any] | None:
    """The whole run at once for a table without Ids (a first run): the Bulk results COPYed straight into
    it, finished as ``merge`` would finish it, in one transaction. None when a record's Id was in the table
    after all: nothing stays, and the caller stages the results, read again, for ``merge``.

    An empty table is locked for the copy, readers too, and its Id key built once after it: until this
    transaction commits there is nothing for them to read but an empty table."""
    try:
        with conn.transaction():
            run = state.find_run(conn, key)  # waits for a twin attempt
            assert run is not None
            if run.status != "extracting":
                return run.summary()
            counters = warehouse.copy_new(conn, entry.table, names, results, exclusive=True)
            return _complete(conn, entry, key, run, counters, sf.meter.calls, staging, fields)
    except psycopg.errors.UniqueViolation as error:
        log.info("%s: %s; staging and merging instead", entry.sobject, error.diag.message_detail)
        return None


def _complete(
    conn: psycopg.Connection,
    entry: SyncObject,
    key: state.RunKey,
    run: state.Run,
    counters: dict[str, int],
    calls: int,
    staging: str,
    fields: list[str] | None,
) -> dict[str, Any]:
    """Finish a run whose window is in the table (in its transaction): the watermark, the counters, and the
    field list the run read (the next runs' own, and what tells them a field is new)."""
    assert run.window_end is not None
    state.advance_watermark(conn, entry.sobject, run.window_end)
    if fields is not None:
        state.remember_fields(conn, entry.sobject, fields)
    finished = state.finish_run(conn, key, "merged", counters, calls)
    warehouse.drop_staging(conn, staging)  # also one an earlier attempt left
    log.info(
        "%s: %d new, %d updated, %d deleted, %d skipped (unchanged), 0 failed; %d API calls;"
        " window [%s, %s); %.1f s",
        entry.sobject, finished.new, finished.updated, finished.deleted, finished.skipped, finished.api_calls,
        run.window_start, run.window_end, finished.seconds,
    )  # fmt: skip
    return finished.summary()


def reconcile(
    entry: SyncObject,
    settings: SyncSettings,
    run_id: str,
    sf_conn_id: str,
    wh_conn_id: str,
    force: bool = False,
) -> dict[str, Any]:
    """Compare every Id with Salesforce, both ways; runs when due. Rows whose Id Salesforce no longer
    returns, even through queryAll (hard deletes, purges, records turned invisible), are flagged as deleted;
    records the table lacks, or holds as deleted while Salesforce shows them live (turned visible, say by
    a sharing rule, without changing), are read and merged: no delta would ever bring them."""
    with warehouse.connect(wh_conn_id) as conn:
        # Checked before taking the lock too (see ``extract``), and again once it is held.
        if (skipped := _not_reconciling(conn, entry, settings, force)) is not None:
            return skipped
        with locks.holding(conn, entry.sobject, INBOUND):
            return _reconcile(conn, entry, settings, run_id, sf_conn_id, force)


def _not_reconciling(
    conn: psycopg.Connection, entry: SyncObject, settings: SyncSettings, force: bool
) -> dict[str, Any] | None:
    """Why the reconciliation does not run now, if it does not."""
    now = state.object_state(conn, entry.sobject)
    if now.fields is None:  # a full load's hand-over, before the first incremental run
        return {"status": "not yet synced"}
    every = timedelta(hours=settings.reconcile_every_hours)
    last = now.last_reconciled_at
    if not force and last and now.now - last < every:
        return {"status": "not due", "next": (last + every).isoformat()}
    # A slice committed after the Ids were listed would hold records the list lacks, flagged as deleted.
    return _waiting_for_full_load(conn, entry)


def _reconcile(
    conn: psycopg.Connection,
    entry: SyncObject,
    settings: SyncSettings,
    run_id: str,
    sf_conn_id: str,
    force: bool,
) -> dict[str, Any]:
    """``reconcile``, once the object's inbound lock is held (so what was checked before it is again)."""
    if (skipped := _not_reconciling(conn, entry, settings, force)) is not None:
        return skipped
    reason, sf = _over_budget(conn, settings, entry, sf_conn_id)
    if reason:
        log.warning("%s: skipping reconciliation: %s", entry.sobject, reason)
        return {"status": "skipped", "reason": reason}
    fields = cast(list[str], state.object_state(conn, entry.sobject).fields)
    sf = sf or Salesforce(sf_conn_id, settings.bulk_deadline)
    key = state.RunKey(run_id, entry.sobject, RECONCILE)
    _abandon_stale_runs(conn, entry, key)
    state.start_run(conn, key, "reconciling")
    staging = warehouse.staging_table(entry.table, f"{run_id}/ids")
    found_staging = warehouse.staging_table(entry.table, f"{run_id}/found")
    ids, target = sql.Identifier("sfsync", staging), sql.Identifier(warehouse.OBJECT_SCHEMA, entry.table)
    listed = ["Id", "IsDeleted"] if "IsDeleted" in fields else ["Id"]  # User has no IsDeleted
    names = [f.lower() for f in fields]
    with conn.transaction():
        warehouse.drop_staging(conn, staging)  # an earlier attempt's
        listing = "CREATE UNLOGGED TABLE {} (id text, isdeleted boolean NOT NULL DEFAULT false)"
        conn.execute(sql.SQL(listing).format(ids))
        query = soql.id_query(entry.sobject, listed)
        seen = _stage(conn, staging, [f.lower() for f in listed], _source(sf, entry, query))
        conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(ids))
        missed = [
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "SELECT s.id FROM {ids} s LEFT JOIN {target} t ON t.id = s.id"
                    " WHERE t.id IS NULL OR (t.isdeleted AND NOT s.isdeleted) ORDER BY s.id"
                ).format(ids=ids, target=target)
            )
        ]
        warehouse.create_staging(conn, entry.table, found_staging, names)
        _stage(conn, found_staging, names, _read_again(sf, entry, fields, missed))
        # The listing took a while: a full load that began since may have committed records it lacks.
        if waiting := _waiting_for_full_load(conn, entry):
            warehouse.drop_staging(conn, staging)
            warehouse.drop_staging(conn, found_staging)
            state.finish_run(conn, key, "waiting", {}, sf.meter.calls, waiting["status"])
            return waiting
        # Row locks from here on only: nothing below waits for Salesforce.
        warehouse.as_the_sync(conn)
        flagged = conn.execute(
            sql.SQL(
                "UPDATE {target} t SET isdeleted = true, {deleted_at} = coalesce(t.{deleted_at}, now()),"
                " {synced_at} = now()"
                " WHERE t.id IS NOT NULL AND NOT t.isdeleted"
                " AND NOT EXISTS (SELECT 1 FROM {ids} s WHERE s.id = t.id)"
            ).format(
                target=target,
                deleted_at=sql.Identifier(warehouse.DELETED_AT),
                synced_at=sql.Identifier(warehouse.SYNCED_AT),
                ids=ids,
            )
        ).rowcount
        restored = warehouse_key.merge_staged(
            conn, entry, settings.warehouse_key_column, found_staging, names
        )
        state.mark_reconciled(conn, entry.sobject)
        counters = restored | {"deleted": flagged}
        state.finish_run(conn, key, "reconciled", counters, sf.meter.calls, f"{seen} Ids in Salesforce")
        warehouse.drop_staging(conn, staging)
        warehouse.drop_staging(conn, found_staging)
    _record_usage(conn, sf, sf_conn_id)
    found = restored["new"] + restored["updated"]
    log.info(
        "%s: reconciled %d Ids, flagged %d rows gone from Salesforce, read %d records no delta brought",
        entry.sobject, seen, flagged, found,
    )  # fmt: skip
    calls = sf.meter.calls
    return {"status": "reconciled", "ids": seen, "flagged": flagged, "found": found, "api_calls": calls}


def _waiting_for_full_load(conn: psycopg.Connection, entry: SyncObject) -> dict[str, Any] | None:
    """The status of a step that waits for the object's unfinished full load, if one runs."""
    if full_load_run := state.full_load_running(conn, entry.sobject):
        log.info("%s: waiting for the full load %s to finish", entry.sobject, full_load_run)
        return {"status": f"waiting for full load {full_load_run}"}
    return None


def _read_again(
    sf: Salesforce, entry: SyncObject, fields: list[str], ids: list[str]
) -> Iterator[dict[str, Any]] | BulkResults:
    """The records with these Ids (the last run's fields): REST queries of as many Ids as keep each URL
    short enough, or, for more than the object's Bulk threshold, every record again in one Bulk job (the
    merge keeps only what differs)."""
    if len(ids) > entry.bulk_threshold:
        everything = soql.delta_query(entry.sobject, fields, entry.cursor_field, None, sf.now())
        return sf.bulk_query(everything, BULK_PAGE_RECORDS)[1]
    base = len(quote_plus(soql.by_id_query(entry.sobject, fields, [])))
    size = max(1, min(_IDS_PER_QUERY, (_QUERY_URL_CHARS - base) // len(quote_plus(f"'{'0' * 18}', "))))
    queries = (soql.by_id_query(entry.sobject, fields, ids[i : i + size]) for i in range(0, len(ids), size))
    return (page for query in queries for page in sf.query_pages(query, entry.page_size))


def _window(
    conn: psycopg.Connection,
    entry: SyncObject,
    settings: SyncSettings,
    key: state.RunKey,
    run: state.Run | None,
    sf: Salesforce,
) -> tuple[datetime | None, datetime]:
    """This run's ``[low, upper)``: frozen at its first attempt, reused by its retries."""
    if run is None:
        watermark = state.object_state(conn, entry.sobject).watermark
        low = watermark - timedelta(seconds=settings.lookback_seconds) if watermark else None
        run = state.start_run(conn, key, "extracting", low, sf.now())
    assert run.window_end is not None
    return run.window_start, run.window_end


def _source(
    sf: Salesforce, entry: SyncObject, query: str, probe: dict[str, Any] | None = None
) -> BulkResults | Iterator[dict[str, Any]]:
    """A query's result: REST pages for small results, a Bulk 2.0 job's above the registry's threshold.
    The size comes from ``probe``, the query's first page or a COUNT() of it when already fetched, else from
    the first REST page, so a small delta costs one call."""
    if probe is None:
        probe = next(sf.query_pages(query, entry.page_size))
    if probe["totalSize"] > entry.bulk_threshold:
        return sf.bulk_query(query, BULK_PAGE_RECORDS)[1]
    first = probe if probe["records"] or not probe["totalSize"] else None  # a COUNT() has no records
    return sf.query_pages(query, entry.page_size, first)


def _stage(
    conn: psycopg.Connection, staging: str, names: list[str], source: BulkResults | Iterator[dict[str, Any]]
) -> int:
    """Copy a query's result (``_source``) into ``staging``."""
    if isinstance(source, BulkResults):
        return warehouse.copy_csv(conn, staging, names, source)
    return warehouse.copy_rows(conn, staging, names, _records(source, names))


def _records(pages: Iterable[dict[str, Any]], names: list[str]) -> Iterator[tuple]:
    """REST records as rows; field names come back in describe casing, columns are lower-case."""
    for page in pages:
        for record in page["records"]:
            lowered = {k.lower(): v for k, v in record.items()}
            yield tuple(lowered.get(n) for n in names)


def _over_budget(
    conn: psycopg.Connection, settings: SyncSettings, entry: SyncObject, sf_conn_id: str
) -> tuple[str | None, Salesforce | None]:
    """Why the org's API budget holds this step back, if it does, and the client that asked the org, if
    one did (its call belongs to the run). Skipped runs make no call, so a reading over the budget would
    never be refreshed: once it is older than ``USAGE_FRESH`` one step (the others skip meanwhile) reads
    the usage again with one small query, whose answer carries Salesforce's ``Sforce-Limit-Info``."""
    usage = state.latest_usage(conn)
    if usage is None or not _over(usage, settings):
        return None, None
    sf = None
    if usage.age >= USAGE_FRESH:
        with locks.trying(conn, "api_usage") as mine:
            if mine:
                sf = Salesforce(sf_conn_id, settings.bulk_deadline)
                try:
                    sf.read_usage(entry.sobject)
                except Exception as error:  # the reading stands, and the next run asks again
                    log.warning("%s: could not read the org's API usage: %s", entry.sobject, error)
                _record_usage(conn, sf, sf_conn_id)
                usage = cast(state.Usage, state.latest_usage(conn))
                if not _over(usage, settings):
                    log.info("the org's API usage is back under the budget: the sync resumes")
                    return None, sf
    return (
        f"the org has used {usage.used} of its {usage.limit} daily API requests, above the "
        f"{settings.api_budget_share:.0%} share the sync may spend"
    ), sf


def _over(usage: state.Usage, settings: SyncSettings) -> bool:
    return bool(usage.limit) and usage.used / usage.limit >= settings.api_budget_share


def _abandon_stale_runs(conn: psycopg.Connection, entry: SyncObject, key: state.RunKey) -> None:
    """Close the object's runs of this direction that never finished, and drop what they staged."""
    for run_id in state.abandon_stale_runs(conn, key):
        log.warning("%s: run %s never finished: marked abandoned", entry.sobject, run_id)
        if key.direction == INBOUND:  # a reconciliation stages inside its transaction: nothing is left
            warehouse.drop_staging(conn, warehouse.staging_table(entry.table, run_id))


def _record_usage(conn: psycopg.Connection, sf: Salesforce, org: str) -> None:
    meter = sf.meter
    if meter.used is not None and meter.limit is not None and meter.server_time is not None:
        state.record_usage(conn, org, meter.used, meter.limit, meter.server_time)
