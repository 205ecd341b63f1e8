"""Salesforce to warehouse, the step that finishes a run: apply the extracted window to
``salesforce.<object>`` and advance the object's watermark, in one transaction.

Staged REST pages are merged. A Bulk job's results are read here, by locator, and COPYed straight into a
table that holds no Ids yet (a first run: no staging, the table's Id key built once after the copy), else
staged and merged. A merged run is never merged twice: a retry returns the counters it recorded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sfsync import load, locks, state
from sfsync.extract import INBOUND
from sfsync.salesforce import BulkResults

if TYPE_CHECKING:
    from sfsync.context import Context
    from sfsync.registry import SyncObject

log = logging.getLogger(__name__)


def merge(context: Context, entry: SyncObject, extracted: dict[str, Any]) -> dict[str, Any]:
    """Apply what ``extract`` returned and advance the watermark, atomically; return the run's counters."""
    conn, key = context.conn, state.RunKey(context.run_id, entry.sobject, INBOUND)
    with locks.holding(conn, entry.sobject, INBOUND):
        run = state.find_run(conn, key)
        assert run is not None
        if run.status != "extracting":  # skipped, abandoned, or finished by an attempt lost unreported
            return run.summary()
        staging, names = extracted["staging"], extracted["columns"]

        def finish(counters: dict[str, int]) -> dict[str, Any]:
            return _complete(context, entry, key, run, counters, staging, extracted["fields"])

        key_column = context.settings.warehouse_key_column
        if job := extracted.get("bulk_job"):
            results = BulkResults(context.sf, job, records=extracted["rows"])
            merged = load.copy_or_merge(
                conn, entry, key_column, names, lambda: results, staging, finish,
                straight=not load.holds_ids(conn, entry.table), exclusive=True,
            )  # fmt: skip
            context.record_usage()
            return merged
        with conn.transaction():
            return finish(load.merge_into(conn, entry, key_column, staging, names))


def _complete(
    context: Context,
    entry: SyncObject,
    key: state.RunKey,
    run: state.Run,
    counters: dict[str, int],
    staging: str,
    fields: list[str],
) -> dict[str, Any]:
    """Finish a run whose window is in the table (in its transaction): the watermark, the counters and
    calls, and the field list the run read (the next runs' own, and what tells them a field is new)."""
    assert run.watermark is not None
    state.advance_watermark(context.conn, entry.sobject, run.watermark)
    state.remember_fields(context.conn, entry.sobject, fields)
    finished = state.finish_run(context.conn, key, "merged", counters, context.calls)
    load.drop_staging(context.conn, staging)  # also one an earlier attempt left
    log.info(
        "%s: %d new, %d updated, %d deleted, %d skipped (unchanged), 0 failed; %d API calls;"
        " window [%s, %s); %.1f s",
        entry.sobject, finished.new, finished.updated, finished.deleted, finished.skipped, finished.api_calls,
        run.window_start, run.watermark, finished.seconds,
    )  # fmt: skip
    return finished.summary()
