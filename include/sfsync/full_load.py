"""The full load: every record the integration user can see, copied with Bulk API 2.0 in CreatedDate slices.

``plan`` describes each object, prepares its table and cuts its history into slices (the whole history
for a manual run, the run's data interval for a backfill run); ``copy_slice`` streams one slice's Bulk
CSV pages straight into the table with ``COPY``, or, when one of its records is there already, stages
them and merges them with the incremental sync's own statement, so re-running a slice or the whole load
is harmless; ``finish`` hands each object over to its incremental DAG, which skips its runs while a full
load of its object is unfinished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg

from sfsync import locks, soql, state, warehouse, warehouse_key
from sfsync.registry import SyncObject, load_registry
from sfsync.salesforce import BulkPage, Salesforce

log = logging.getLogger(__name__)

BULK_PAGE_RECORDS = 100_000
PROGRESS_SECONDS = 10.0  # a slice's progress is logged at least this often while its rows stream in


def plan(
    objects: list[str],
    slice_days: float,
    interval: tuple[datetime, datetime] | None,
    run_id: str,
    sf_conn_id: str,
    wh_conn_id: str,
) -> list[dict[str, str]]:
    """Register this run's slices and return them. An object is planned once: a plan retried after failing
    halfway keeps the slices (and hand-over watermarks) of the objects it had planned, and plans the rest."""
    registry = load_registry()
    entries = [registry.get(name) for name in objects] if objects else list(registry.enabled())
    with warehouse.connect(wh_conn_id) as conn:
        known = {piece["sobject"] for piece in state.slices(conn, run_id)}
        if missing := [entry for entry in entries if entry.sobject not in known]:
            sf = Salesforce(sf_conn_id)
            for entry in missing:
                _plan_object(conn, sf, entry, slice_days, interval, run_id)
        planned = state.slices(conn, run_id)
    log.info("full load %s: %d slices over %d objects", run_id, len(planned), len(entries))
    return planned


def _plan_object(
    conn: psycopg.Connection,
    sf: Salesforce,
    entry: SyncObject,
    slice_days: float,
    interval: tuple[datetime, datetime] | None,
    run_id: str,
) -> None:
    warehouse.prepare_object_table(conn, entry, sf.describe(entry.sobject))  # warnings logged
    watermark = sf.now()  # taken before any record is read: the hand-over point
    if interval is None:
        first = sf.client.query_all(
            f"SELECT CreatedDate FROM {entry.sobject} ORDER BY CreatedDate LIMIT 1", True
        )
        start = _parse(first["records"][0]["CreatedDate"]) if first["records"] else watermark
        interval = (start, watermark)
    start, end = interval[0], min(interval[1], watermark)
    bounds = [start]
    while bounds[-1] + timedelta(days=slice_days) < end:
        bounds.append(bounds[-1] + timedelta(days=slice_days))
    bounds.append(max(end, start))
    with conn.transaction():
        for low, high in zip(bounds, bounds[1:], strict=False):
            state.plan_slice(conn, state.SliceKey(run_id, entry.sobject, low), high, watermark)


def copy_slice(piece: dict[str, str], run_id: str, sf_conn_id: str, wh_conn_id: str) -> dict[str, Any]:
    """Copy the records created in one slice; returns rows, counters and API calls."""
    registry = load_registry()
    entry = registry.get(piece["sobject"])
    start, end = datetime.fromisoformat(piece["start"]), datetime.fromisoformat(piece["end"])
    key = state.SliceKey(run_id, entry.sobject, start)
    # Slices share the object's inbound lock: they copy different records, but no pull or reconcile of the
    # object may run beside them (one started by hand, or by another deployment).
    with warehouse.connect(wh_conn_id) as conn, locks.holding(conn, entry.sobject, "inbound", shared=True):
        state.mark_slice(conn, key, "copying", attempt=1)
        sf = Salesforce(sf_conn_id, registry.settings.slice_bulk_deadline)
        try:
            columns, _ = warehouse.prepare_object_table(conn, entry, sf.describe(entry.sobject))
            names = [c.name for c in columns]
            staging = _staging(entry.sobject, run_id, start)
            query = soql.created_query(entry.sobject, [c.field for c in columns], start, end)
            total, results = sf.bulk_query(query, BULK_PAGE_RECORDS)
            try:
                if warehouse_key.waiting(conn, entry.table):  # their records may be among these: match them
                    raise _MustMerge
                # Optimistically, as slices hold different records: straight into the table, no staging.
                with conn.transaction():
                    pages = _progress(results, total, entry.sobject, piece)
                    counters = warehouse.copy_new(conn, entry.table, names, pages)
                    rows = counters["new"] + counters["deleted"]
                    _done(conn, key, sf, rows, staging)
            except (psycopg.errors.UniqueViolation, _MustMerge) as error:  # copied before, or another slice's
                why = (
                    error.diag.message_detail if isinstance(error, psycopg.Error) else "rows await their Ids"
                )
                log.info("%s: %s; staging and merging instead", entry.sobject, why)
                warehouse.create_staging(conn, entry.table, staging, names)
                pages = _progress(results, total, entry.sobject, piece)  # read again, by locator
                rows = warehouse.copy_csv(conn, staging, names, pages)
                with conn.transaction():
                    counters = warehouse_key.merge_staged(
                        conn, entry, registry.settings.warehouse_key_column, staging, names
                    )
                    _done(conn, key, sf, rows, staging)
        except Exception as error:
            why = f"{type(error).__name__}: {error}"[:2000]
            state.mark_slice(conn, key, "failed", calls=sf.meter.calls, error=why)
            raise
    return {"rows": rows, **counters, "api_calls": sf.meter.calls}


def finish(run_id: str, wh_conn_id: str) -> dict[str, Any]:
    """Hand every fully copied object over to its incremental DAG; fail naming the slices that failed."""
    with warehouse.connect(wh_conn_id) as conn, conn.transaction():
        copies = state.copies(conn, run_id)
        if not copies:  # every object gets a slice, if only an empty one: the plan never ran
            raise RuntimeError(f"full load {run_id} has no slices: its plan_slices task did not succeed")
        for copy in copies:
            if copy.complete:
                state.hand_over(conn, copy.sobject, copy.watermark)
        failed = state.close_slices(conn, run_id)
        for piece in failed:  # what they staged holds customer data: a retry stages it anew
            warehouse.drop_staging(conn, _staging(piece.sobject, run_id, piece.start))
    copied = {copy.sobject: copy.rows for copy in copies if copy.complete}
    log.info("full load %s: handed over %s", run_id, ", ".join(f"{s} ({n} rows)" for s, n in copied.items()))
    if failed:
        lines = [f"{p.sobject} [{p.start:%Y-%m-%d %H:%M}, {p.end:%Y-%m-%d %H:%M}): {p.error}" for p in failed]
        raise RuntimeError(
            f"{len(failed)} slices failed; clear them to copy them again:\n" + "\n".join(lines)
        )
    return {"handed_over": copied}


def _staging(sobject: str, run_id: str, start: datetime) -> str:
    return warehouse.staging_table(sobject.lower(), f"{run_id}/{start.isoformat()}")


def _done(conn: psycopg.Connection, key: state.SliceKey, sf: Salesforce, rows: int, staging: str) -> None:
    state.mark_slice(conn, key, "done", calls=sf.meter.calls, rows=rows)
    warehouse.drop_staging(conn, staging)  # also one an earlier attempt left


def _progress(
    pages: Iterable[BulkPage], total: int, sobject: str, piece: dict[str, str]
) -> Iterator[BulkPage]:
    """Pass Bulk CSV pages through, logging rows, rate and time left after each page and, within a page,
    every ``PROGRESS_SECONDS`` (its rows then counted by line ends: a value with a line break in it counts
    twice, until the page's end sets the count right)."""
    started = reported = time.monotonic()
    rows = 0

    def report(done: int) -> None:
        nonlocal reported
        reported = time.monotonic()
        rate = done / max(reported - started, 1e-6)
        left = max(total - done, 0) / rate if rate else 0
        log.info(
            "%s [%s, %s): %d of %d rows, %.0f rows/s, %.0f s left",
            sobject, piece["start"], piece["end"], done, total, rate, left,
        )  # fmt: skip

    def counted(page: BulkPage) -> Iterator[bytes]:
        lines = -1  # the header
        for chunk in page:
            yield chunk
            lines += chunk.count(b"\n")
            if time.monotonic() - reported >= PROGRESS_SECONDS:
                report(rows + min(max(lines, 0), page.records))

    for page in pages:
        yield BulkPage(page.records, counted(page))
        rows += page.records
        report(rows)


class _MustMerge(Exception):
    """The slice cannot be COPYed straight into the table: rows inserted in the warehouse wait for Ids."""


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
