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
from typing import TYPE_CHECKING, Any

from sfsync import load, locks, soql, state, tables
from sfsync.extract import INBOUND
from sfsync.registry import SyncObject, load_registry
from sfsync.salesforce import BulkPage

if TYPE_CHECKING:
    from sfsync.context import Context

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0  # a slice's progress is logged at least this often while its rows stream in


def plan(
    context: Context, objects: list[str], slice_days: float, interval: tuple[datetime, datetime] | None
) -> list[dict[str, str]]:
    """Register this run's slices and return them. An object is planned once: a plan retried after failing
    halfway keeps the slices (and hand-over watermarks) of the objects it had planned, and plans the rest."""
    registry = load_registry()
    entries = [registry.get(name) for name in objects] if objects else list(registry.enabled())
    conn = context.conn
    known = {piece["sobject"] for piece in state.slices(conn, context.run_id)}
    for entry in entries:
        if entry.sobject not in known:
            _plan_object(context, entry, slice_days, interval)
    planned = state.slices(conn, context.run_id)
    log.info("full load %s: %d slices over %d objects", context.run_id, len(planned), len(entries))
    return planned


def _plan_object(
    context: Context, entry: SyncObject, slice_days: float, interval: tuple[datetime, datetime] | None
) -> None:
    sf = context.sf
    tables.prepare_object_table(context.conn, entry, sf.describe(entry.sobject))  # warnings logged
    watermark = sf.now()  # taken before any record is read: the hand-over point
    if interval is None:
        first = sf.client.query_all(soql.first_created(entry.sobject), True)
        start = _parse(first["records"][0]["CreatedDate"]) if first["records"] else watermark
        interval = (start, watermark)
    with context.conn.transaction():
        for low, high in slice_bounds(interval[0], min(interval[1], watermark), slice_days):
            key = state.SliceKey(context.run_id, entry.sobject, low)
            state.plan_slice(context.conn, key, high, watermark)


def slice_bounds(start: datetime, end: datetime, slice_days: float) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into slices of ``slice_days`` (the last one shorter); one empty slice when the
    interval is empty, so every object gets a slice and the hand-over knows it was planned."""
    bounds = [start]
    while bounds[-1] + timedelta(days=slice_days) < end:
        bounds.append(bounds[-1] + timedelta(days=slice_days))
    bounds.append(max(end, start))
    return list(zip(bounds, bounds[1:], strict=False))


def copy_slice(context: Context, piece: dict[str, str]) -> dict[str, Any]:
    """Copy the records created in one slice; returns rows, counters and API calls."""
    entry = load_registry().get(piece["sobject"])
    start, end = datetime.fromisoformat(piece["start"]), datetime.fromisoformat(piece["end"])
    conn, key = context.conn, state.SliceKey(context.run_id, entry.sobject, start)
    # Slices share the object's inbound lock: they copy different records, but no pull or reconcile of the
    # object may run beside them (one started by hand, or by another deployment).
    with locks.holding(conn, entry.sobject, INBOUND, shared=True):
        state.mark_slice(conn, key, "copying", attempt=1)
        try:
            columns, _ = tables.prepare_object_table(conn, entry, context.sf.describe(entry.sobject))
            names = [c.name for c in columns]
            staging = _staging(entry.sobject, context.run_id, start)
            results = context.sf.bulk_query(
                soql.created_query(entry.sobject, [c.field for c in columns], start, end)
            )

            # Optimistically straight into the table, as slices hold different records.
            counters = load.copy_or_merge(
                conn, entry, context.settings.warehouse_key_column, names,
                lambda: _progress(results, results.records, entry.sobject, piece), staging,
                lambda counters: _done(context, key, staging, counters),
            )  # fmt: skip
        except Exception as error:
            why = f"{type(error).__name__}: {error}"[:2000]
            state.mark_slice(conn, key, "failed", calls=context.calls, error=why)
            raise
    return {"rows": sum(counters.values()), **counters, "api_calls": context.calls}


def finish(context: Context) -> dict[str, Any]:
    """Hand every fully copied object over to its incremental DAG; fail naming the slices that failed."""
    conn, run_id = context.conn, context.run_id
    with conn.transaction():
        copies = state.copies(conn, run_id)
        if not copies:  # every object gets a slice, if only an empty one: the plan never ran
            raise RuntimeError(f"full load {run_id} has no slices: its plan_slices task did not succeed")
        for copy in copies:
            if copy.complete:
                state.hand_over(conn, copy.sobject, copy.watermark)
        failed = state.close_slices(conn, run_id)
        for piece in failed:  # what they staged holds customer data: a retry stages it anew
            load.drop_staging(conn, _staging(piece.sobject, run_id, piece.start))
    copied = {copy.sobject: copy.rows for copy in copies if copy.complete}
    log.info("full load %s: handed over %s", run_id, ", ".join(f"{s} ({n} rows)" for s, n in copied.items()))
    if failed:
        lines = [f"{p.sobject} [{p.start:%Y-%m-%d %H:%M}, {p.end:%Y-%m-%d %H:%M}): {p.error}" for p in failed]
        raise RuntimeError(
            f"{len(failed)} slices failed; clear them to copy them again:\n" + "\n".join(lines)
        )
    return {"handed_over": copied}


def _staging(sobject: str, run_id: str, start: datetime) -> str:
    return load.staging_table(sobject.lower(), f"{run_id}/{start.isoformat()}")


def _done(context: Context, key: state.SliceKey, staging: str, counters: dict[str, int]) -> dict[str, int]:
    """Mark the slice copied, in the transaction that copied it."""
    state.mark_slice(context.conn, key, "done", calls=context.calls, rows=sum(counters.values()))
    load.drop_staging(context.conn, staging)  # also one an earlier attempt left
    return counters


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


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
