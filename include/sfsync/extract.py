"""Salesforce to warehouse, first step of a run: read what changed in the run's window.

The window ``[window_start, watermark)`` is frozen in ``sfsync.sync_runs`` when the run first starts, so
a retry reads the same one; ``merge`` then applies it and moves the object's watermark to the run's. A
small window is read through REST queryAll (deletes arrive as ``IsDeleted`` records) and staged here; a
large one becomes a Bulk API 2.0 job whose results ``merge`` takes in (straight into a table that has no
Ids yet, such as on a first run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import psycopg

from sfsync import budget, load, locks, soql, state, tables
from sfsync.salesforce import BulkResults, Salesforce

if TYPE_CHECKING:
    from sfsync.context import Context
    from sfsync.registry import SyncObject, SyncSettings

log = logging.getLogger(__name__)

INBOUND = "inbound"
_IDS_PER_QUERY = 200  # Ids in one SOQL IN list, at most
_QUERY_URL_CHARS = 12_000  # a REST query travels in its URL: Salesforce refuses URLs of about 16,000


def extract(context: Context, entry: SyncObject) -> dict[str, Any]:
    """Stage this run's window of changes, or start the Bulk job that holds it; return what ``merge`` needs
    (a reference, never rows)."""
    conn, key = context.conn, state.RunKey(context.run_id, entry.sobject, INBOUND)
    # Checked before taking the lock too: a full load's slices share it for hours, and a pull queued for it
    # would hold its pool slot, and queue the next slices behind it.
    if not state.find_run(conn, key) and (waiting := waiting_for_full_load(conn, entry)):
        return waiting
    with locks.holding(conn, entry.sobject, INBOUND):
        return _extract(context, entry, key)


def _extract(context: Context, entry: SyncObject, key: state.RunKey) -> dict[str, Any]:
    """``extract``, once the object's inbound lock is held."""
    conn = context.conn
    run = state.find_run(conn, key)
    if run and run.status != "extracting":  # skipped, or finished by an attempt that died unreported
        return run.summary()
    if not run:
        if waiting := waiting_for_full_load(conn, entry):
            return waiting
        abandon_stale_runs(conn, entry, key)
        if reason := budget.holds_back(context, entry.sobject):
            log.warning("%s: skipping extraction: %s", entry.sobject, reason)
            state.start_run(conn, key, "skipping")
            state.finish_run(conn, key, "skipped", {}, context.calls, reason)
            return {"status": "skipped"}
        run = state.start_run(conn, key, "extracting", *window(context, entry))
    low, watermark = run.window_start, run.watermark
    assert watermark is not None  # every extracting run has its window
    known = state.object_state(conn, entry.sobject).fields
    asked = _first_question(entry, known, low, watermark)
    describe, probe = context.sf.describe_and_query(entry.sobject, asked, entry.page_size)
    columns, warnings = tables.prepare_object_table(conn, entry, describe)
    if warnings:
        state.note(conn, key, "; ".join(warnings))
    fields = [c.field for c in columns]
    if added := new_fields(known, fields, low):
        # A field new to the sync (created, made visible, or added to the registry) holds values in
        # records that will not change for it: this run reads every record again, and the merge fills the
        # column in. The run's window says so, for its retries; the new field list is remembered only
        # when the run is merged, so a run that never gets there leaves the next one to read it all.
        low = None
        state.read_all_again(conn, key)
        log.info("%s: new fields %s: reading every record again", entry.sobject, ", ".join(added))
    names = [c.name for c in columns]
    query = soql.delta_query(entry.sobject, fields, entry.cursor_field, low, watermark)
    if probe is not None and (added or (probe["records"] and asked != query)):  # not this query's
        probe = None
    found = source(context.sf, entry, query, probe)
    staging = load.staging_table(entry.table, key.run_id)
    extracted: dict[str, Any] = {
        "status": "extracted",
        "staging": staging,
        "columns": names,
        "fields": fields,
        "watermark": watermark.isoformat(),
    }
    if isinstance(found, BulkResults):
        extracted |= {"bulk_job": found.job_id, "rows": found.records}
    else:
        load.create_staging(conn, entry.table, staging, names)
        extracted["rows"] = stage(conn, staging, names, found)
    context.record_usage()
    state.add_calls(conn, key, context.calls)
    log.info(
        "%s: %s %d records of [%s, %s) with %d API calls",
        entry.sobject, "a Bulk job holds" if "bulk_job" in extracted else "staged", extracted["rows"], low,
        watermark, context.calls,
    )  # fmt: skip
    return extracted


def window(context: Context, entry: SyncObject) -> tuple[datetime | None, datetime]:
    """A new run's ``[window_start, watermark)``: from the object's watermark less the lookback (from the
    beginning on a first run) to the end of the org's current second, by the org's clock."""
    watermark = state.object_state(context.conn, entry.sobject).watermark
    return start_of_window(watermark, context.settings), context.sf.now()


def start_of_window(watermark: datetime | None, settings: SyncSettings) -> datetime | None:
    """Where a window after ``watermark`` starts: ``lookback_seconds`` earlier, for changes committed late
    with an earlier SystemModstamp (long transactions); None, everything, before the first run."""
    return watermark - timedelta(seconds=settings.lookback_seconds) if watermark else None


def new_fields(known: list[str] | None, fields: list[str], low: datetime | None) -> list[str]:
    """The fields this run reads that the last merged run did not, when the run would otherwise read a
    delta only (a first run reads everything anyway)."""
    return sorted(set(fields) - set(known or fields)) if low is not None else []


def _first_question(
    entry: SyncObject, known: list[str] | None, low: datetime | None, watermark: datetime
) -> str:
    """The query that goes with the describe, in one composite call: the usual run's delta, with the last
    run's fields; or, for a first run (likely large), a count that tells whether it goes through Bulk, where
    a first REST page would take as long and then be read again by the Bulk job."""
    if known and low is not None:
        return soql.delta_query(entry.sobject, known, entry.cursor_field, low, watermark)
    count = soql.count_of(soql.delta_query(entry.sobject, ["Id"], entry.cursor_field, low, watermark))
    return f"{count} LIMIT {entry.bulk_threshold + 1}"


def waiting_for_full_load(conn: psycopg.Connection, entry: SyncObject) -> dict[str, Any] | None:
    """The status of a step that waits for the object's unfinished full load, if one runs."""
    if full_load_run := state.full_load_running(conn, entry.sobject):
        log.info("%s: waiting for the full load %s to finish", entry.sobject, full_load_run)
        return {"status": f"waiting for full load {full_load_run}"}
    return None


def abandon_stale_runs(conn: psycopg.Connection, entry: SyncObject, key: state.RunKey) -> None:
    """Close the object's runs of this direction that never finished, and drop what they staged."""
    for run_id in state.abandon_stale_runs(conn, key):
        log.warning("%s: run %s never finished: marked abandoned", entry.sobject, run_id)
        if key.direction == INBOUND:  # a reconciliation stages inside its transaction: nothing is left
            load.drop_staging(conn, load.staging_table(entry.table, run_id))


def source(
    sf: Salesforce, entry: SyncObject, query: str, probe: dict[str, Any] | None = None
) -> BulkResults | Iterator[dict[str, Any]]:
    """A query's result: REST pages for small results, a Bulk 2.0 job's above the registry's threshold.
    The size comes from ``probe``, the query's first page or a COUNT() of it when already fetched, else from
    the first REST page, so a small delta costs one call."""
    if probe is None:
        probe = next(sf.query_pages(query, entry.page_size))
    if probe["totalSize"] > entry.bulk_threshold:
        return sf.bulk_query(query)
    first = probe if probe["records"] or not probe["totalSize"] else None  # a COUNT() has no records
    return sf.query_pages(query, entry.page_size, first)


def read_again(
    sf: Salesforce, entry: SyncObject, fields: list[str], ids: list[str]
) -> Iterator[dict[str, Any]] | BulkResults:
    """The records with these Ids (the last run's fields): REST queries of as many Ids as keep each URL
    short enough, or, for more than the object's Bulk threshold, every record again in one Bulk job (the
    merge keeps only what differs)."""
    if len(ids) > entry.bulk_threshold:
        return sf.bulk_query(soql.delta_query(entry.sobject, fields, entry.cursor_field, None, sf.now()))
    base = len(quote_plus(soql.by_id_query(entry.sobject, fields, [])))
    size = max(1, min(_IDS_PER_QUERY, (_QUERY_URL_CHARS - base) // len(quote_plus(f"'{'0' * 18}',"))))
    queries = (soql.by_id_query(entry.sobject, fields, ids[i : i + size]) for i in range(0, len(ids), size))
    return (page for query in queries for page in sf.query_pages(query, entry.page_size))


def stage(
    conn: psycopg.Connection, staging: str, names: list[str], found: BulkResults | Iterator[dict[str, Any]]
) -> int:
    """Copy a query's result (``source``) into ``staging``."""
    if isinstance(found, BulkResults):
        return load.copy_csv(conn, staging, names, found)
    return load.copy_rows(conn, staging, names, _records(found, names))


def _records(pages: Iterable[dict[str, Any]], names: list[str]) -> Iterator[tuple]:
    """REST records as rows; field names come back in describe casing, columns are lower-case."""
    for page in pages:
        for record in page["records"]:
            lowered = {k.lower(): v for k, v in record.items()}
            yield tuple(lowered.get(n) for n in names)
