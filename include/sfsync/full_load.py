"""The full load: every record the integration user can see, copied with Bulk API 2.0 in CreatedDate slices.

``plan`` describes and counts the objects (one composite call for five of them), prepares their tables
and cuts each one's range (the whole history for a manual run, the run's data interval for a backfill
run) into slices of about equal size (``sfsync.slicing``): none for an object with no record in it (it is
recorded as skipped, so the hand-over still covers it), one for an object that fits in one Bulk job, more
for a larger one. The slices keep the fields the plan described. ``copy_slice`` streams one slice's Bulk
CSV pages straight into the table with ``COPY``, or, when one of its records is there already, stages
them and merges them with the incremental sync's own statement, so re-running a slice or the whole load
is harmless; ``finish`` hands each object over to its incremental DAG, which skips its runs while a full
load of its object is unfinished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from simple_salesforce.exceptions import SalesforceMalformedRequest

from sfsync import load, locks, slicing, soql, state, tables
from sfsync.extract import INBOUND
from sfsync.registry import SyncObject, load_registry
from sfsync.salesforce import COMPOSITE_QUERIES, BulkPage, BulkResults

if TYPE_CHECKING:
    from sfsync.context import Context
    from sfsync.salesforce import Salesforce

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0  # a slice's progress is logged at least this often while its rows stream in


def plan(
    context: Context,
    objects: list[str],
    interval: tuple[datetime, datetime] | None = None,
    job_records: int | None = None,
) -> list[dict[str, str]]:
    """Register this run's slices and return those to copy. ``job_records``: about the most records one
    Bulk job copies (by default the registry's ``full_load_job_records``). An object is planned once: a
    plan retried after failing halfway keeps the slices (and hand-over watermarks) of the objects it had
    planned, and plans the rest."""
    registry = load_registry()
    entries = [registry.get(name) for name in objects] if objects else list(registry.enabled())
    known = state.planned_objects(context.conn, context.run_id)
    missing = [entry for entry in entries if entry.sobject not in known]
    for at in range(0, len(missing), COMPOSITE_QUERIES):  # each object's count is a query subrequest
        group = missing[at : at + COMPOSITE_QUERIES]
        _plan_objects(context, group, interval, job_records or context.settings.full_load_job_records)
    planned = state.slices(context.conn, context.run_id)
    log.info("full load %s: %d slices over %d objects", context.run_id, len(planned), len(entries))
    return planned


def _plan_objects(
    context: Context,
    entries: list[SyncObject],
    interval: tuple[datetime, datetime] | None,
    job_records: int,
) -> None:
    sf, conn = context.sf, context.conn
    watermark = sf.now()  # taken before any record is read: the hand-over point
    start, end = interval or (slicing.EARLIEST, watermark)
    end = max(min(end, watermark), start)
    names = [entry.sobject for entry in entries]
    surveyed = sf.describe_and_count(names, [soql.count_created(name, start, end) for name in names])
    fields, counts = {}, {}
    for entry, (describe, count) in zip(entries, surveyed, strict=True):
        columns, _ = tables.prepare_object_table(conn, entry, describe)  # warnings logged
        fields[entry.sobject], counts[entry.sobject] = [column.field for column in columns], count
    histograms = histograms_of(sf, counts, (start, end), job_records, whole_history=interval is None)
    with conn.transaction():
        for name, histogram in histograms.items():
            for low, high in histogram.slices():
                key = state.SliceKey(context.run_id, name, low)
                state.plan_slice(conn, key, high, watermark, fields[name], skipped=not histogram.jobs)


def histograms_of(
    sf: Salesforce,
    counts: dict[str, int],
    interval: tuple[datetime, datetime],
    job_records: int,
    whole_history: bool,
) -> dict[str, slicing.Histogram]:
    """Each object's histogram of the records created in ``interval`` (``counts`` of them), refined until
    its slices are about equal."""
    histograms = {}
    for name, count in counts.items():
        jobs = slicing.jobs_for(count, job_records)
        histograms[name] = slicing.Histogram([slicing.Bin(*interval, count)], jobs)
        log.info("%s: %d records created in [%s, %s): %d Bulk jobs", name, count, *interval, jobs)
    if whole_history:
        _from_first_record(sf, histograms)
    _refine(sf, histograms)
    return histograms


def _from_first_record(sf: Salesforce, histograms: dict[str, slicing.Histogram]) -> None:
    """Start the histogram of each object to slice at its first record: a whole history's range begins
    centuries before it."""
    sliced = [name for name, histogram in histograms.items() if histogram.jobs > 1]
    for name, page in zip(sliced, sf.query_many([soql.first_created(n) for n in sliced]), strict=True):
        (whole,) = histograms[name].bins
        first = _parse(page["records"][0]["CreatedDate"]) if page["records"] else whole.start
        if whole.start < first < whole.end:
            before, after = slicing.Bin(whole.start, first, 0), slicing.Bin(first, whole.end, whole.count)
            histograms[name].bins = [before, after]


def _refine(sf: Salesforce, histograms: dict[str, slicing.Histogram]) -> None:
    """Count the bins that cuts fall inside again, in finer spans, until the slices are about equal."""
    for _ in range(slicing.MAX_ROUNDS):
        pending = [(name, h, i) for name, h in histograms.items() for i in h.to_refine()]
        if not pending:
            return
        parts = slicing.parts_for(len(pending), COMPOSITE_QUERIES)
        splits = [(name, h, i, slicing.split(h.bins[i], parts)) for name, h, i in pending]
        queries = [soql.count_created(name, *span) for name, _, _, spans in splits for span in spans[:-1]]
        counts = iter(page["totalSize"] for page in sf.query_many(queries))
        answered = [(h, i, spans, [next(counts) for _ in spans[:-1]]) for _, h, i, spans in splits]
        for histogram, index, spans, numbers in reversed(answered):  # later bins first: indexes hold
            histogram.refine(index, spans, numbers)


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
            fields, results = _bulk_query(context, entry, state.slice_fields(conn, key), start, end)
            staging = _staging(entry.sobject, context.run_id, start)
            # Optimistically straight into the table, as slices hold different records.
            counters = load.copy_or_merge(
                conn, entry, context.settings.warehouse_key_column, [f.lower() for f in fields],
                lambda: _progress(results, results.records, entry.sobject, piece), staging,
                lambda counters: _done(context, key, staging, counters),
            )  # fmt: skip
        except Exception as error:
            why = f"{type(error).__name__}: {error}"[:2000]
            state.mark_slice(conn, key, "failed", calls=context.calls, error=why)
            raise
    return {"rows": sum(counters.values()), **counters, "api_calls": context.calls}


def _bulk_query(
    context: Context, entry: SyncObject, fields: list[str] | None, start: datetime, end: datetime
) -> tuple[list[str], BulkResults]:
    """The slice's Bulk job, over the fields the plan described. Should one of them have vanished since
    (deleted, or hidden from the integration user), the job is refused: the object is described again and
    the fields still there are copied (the vanished one stops updating, as in the incremental sync). A
    slice planned before its fields were kept describes the object too."""

    def query(names: list[str]) -> BulkResults:
        # Pages as large as Salesforce makes them: a job holds up to millions of records, and every page
        # costs a call (they stream, whatever their size).
        return context.sf.bulk_query(soql.created_query(entry.sobject, names, start, end), page_records=None)

    if fields is not None:
        try:
            return fields, query(fields)
        except SalesforceMalformedRequest as error:
            # The REST API says INVALID_FIELD; Bulk API 2.0 may wrap the same message in INVALIDJOB.
            if "INVALID_FIELD" not in str(error) and "No such column" not in str(error):
                raise
            log.warning("%s: a field vanished since the plan (%s); describing it again", entry.sobject, error)
    columns, _ = tables.prepare_object_table(context.conn, entry, context.sf.describe(entry.sobject))
    visible = [column.field for column in columns]
    kept = visible if fields is None else [name for name in fields if name in visible]
    return kept, query(kept)


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
