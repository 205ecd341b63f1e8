"""Run state: the one owner of the sync's bookkeeping, so that no other module reads or writes it.

- the run ledger, ``sfsync.sync_runs``: one row per DAG run, object and direction (``inbound``,
  ``outbound``, ``reconcile``), with its window, counters, API calls, duration and message;
- each object's state, ``sfsync.sync_state``: its watermark (the cursor up to which the warehouse is
  complete), the field list its last run read, and when its Ids were last reconciled;
- the full load's slices, ``sfsync.full_load_slices``;
- the org's API usage as Salesforce last reported it, ``sfsync.api_usage``.

Statements too long to read inline are in ``sql/state/``. Rows come back as the dataclasses below. The
status page (``status.py``) reads these tables too, and never writes them; their history is pruned here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from sfsync import warehouse
from sfsync.defaults import DAGRUN_TIMEOUT, FULL_LOAD_TIMEOUT

COUNTERS = ("new", "updated", "deleted", "skipped")


@dataclass(frozen=True)
class RunKey:
    """A run of one object in one direction."""

    run_id: str
    sobject: str
    direction: str

    def params(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    """A row of the run ledger."""

    status: str
    window_start: datetime | None
    watermark: datetime | None  # where the object's watermark moves when the run is merged
    new: int
    updated: int
    deleted: int
    skipped: int
    failed: int
    api_calls: int
    seconds: float | None

    def summary(self) -> dict[str, Any]:
        """What a task reports of its run (its XCom): status, counters, calls and duration."""
        return {k: v for k, v in asdict(self).items() if k not in ("window_start", "watermark")}


@dataclass(frozen=True)
class ObjectState:
    """An object's row of ``sfsync.sync_state``, with the warehouse's clock when it was read."""

    watermark: datetime | None
    fields: list[str] | None
    last_reconciled_at: datetime | None
    now: datetime


@dataclass(frozen=True)
class Usage:
    """The org's API usage as Salesforce last reported it, and how old that report is."""

    used: int
    limit: int
    age: timedelta


# -- The run ledger -----------------------------------------------------------------------------------


def find_run(conn: psycopg.Connection, key: RunKey) -> Run | None:
    """The run's row, locked for the caller's transaction (a twin attempt waits for it)."""
    with conn.cursor(row_factory=class_row(Run)) as cursor:
        return cursor.execute(warehouse.statement("state/find_run"), key.params()).fetchone()


def start_run(
    conn: psycopg.Connection,
    key: RunKey,
    status: str,
    window_start: datetime | None = None,
    watermark: datetime | None = None,
) -> Run:
    """The run's row, created with this status and window on its first start (a retry finds its own)."""
    window = {"status": status, "window_start": window_start, "watermark": watermark}
    conn.execute(warehouse.statement("state/start_run"), key.params() | window)
    run = find_run(conn, key)
    assert run is not None
    return run


def finish_run(
    conn: psycopg.Connection,
    key: RunKey,
    status: str,
    counters: dict[str, int],
    calls: int,
    message: str | None = None,
) -> Run:
    """Record how the run ended; a run finished without a message keeps the one it had."""
    values = {"status": status, "api_calls": calls, "message": message, "failed": 0}
    values |= {name: counters.get(name, 0) for name in COUNTERS}
    conn.execute(warehouse.statement("state/finish_run"), key.params() | values)
    run = find_run(conn, key)
    assert run is not None
    return run


def add_calls(conn: psycopg.Connection, key: RunKey, calls: int) -> None:
    _update_run(conn, key, "api_calls = api_calls + %(calls)s", {"calls": calls})


def note(conn: psycopg.Connection, key: RunKey, message: str) -> None:
    """Keep a message with the run (its summary): warnings the registry's owner should act on."""
    _update_run(conn, key, "message = %(message)s", {"message": message})


def read_all_again(conn: psycopg.Connection, key: RunKey) -> None:
    """Open the run's window at the start: it reads every record, and so do its retries."""
    _update_run(conn, key, "window_start = NULL", {})


def abandon_stale_runs(conn: psycopg.Connection, key: RunKey) -> list[str]:
    """Mark the object's runs of this direction that never finished as abandoned; their run ids."""
    params = key.params() | {"stale_after": DAGRUN_TIMEOUT}
    return [run_id for (run_id,) in conn.execute(warehouse.statement("state/abandon_runs"), params)]


def count_push(conn: psycopg.Connection, key: RunKey, counters: dict[str, int], failed: int) -> None:
    """Add one settled call's counters to a push's run."""
    values = {name: counters.get(name, 0) for name in COUNTERS} | {"failed": failed}
    conn.execute(warehouse.statement("state/count_push"), key.params() | values)


def finish_push(
    conn: psycopg.Connection, key: RunKey, status: str, calls: int, message: str | None
) -> dict[str, int]:
    """Record how a push ended; its counters, as its settled calls added them up."""
    values = {"status": status, "api_calls": calls, "message": message}
    totals = conn.execute(warehouse.statement("state/finish_push"), key.params() | values).fetchone()
    return dict(zip((*COUNTERS, "failed"), totals or (0,) * 5, strict=True))


def _update_run(conn: psycopg.Connection, key: RunKey, assignment: str, values: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE sfsync.sync_runs SET " + assignment  # assignments are this module's own literals
        + " WHERE run_id = %(run_id)s AND sobject = %(sobject)s AND direction = %(direction)s",
        key.params() | values,
    )  # fmt: skip


def prune_history(conn: psycopg.Connection, days: float) -> dict[str, int]:
    """Delete finished runs, decided conflicts and status-page actions older than ``days``; how many of each.
    Runs still at work stay (a later run marks them abandoned)."""
    cutoff = {"cutoff": timedelta(days=days)}
    return {
        table: conn.execute(statement, cutoff).rowcount
        for table, statement in (
            (
                "sync_runs",
                "DELETE FROM sfsync.sync_runs"
                " WHERE started_at < now() - %(cutoff)s AND finished_at IS NOT NULL",
            ),
            ("conflicts", "DELETE FROM sfsync.conflicts WHERE decided_at < now() - %(cutoff)s"),
            ("actions", "DELETE FROM sfsync.actions WHERE at < now() - %(cutoff)s"),
        )
    }


# -- Each object's state ------------------------------------------------------------------------------


def object_state(conn: psycopg.Connection, sobject: str) -> ObjectState:
    """The object's watermark, field list and last reconciliation (all None before its first run)."""
    row = conn.execute(
        "SELECT s.watermark, s.fields, s.last_reconciled_at, now() FROM (SELECT 1) AS one"
        " LEFT JOIN sfsync.sync_state s ON s.sobject = %s",
        [sobject],
    ).fetchone()
    assert row is not None
    return ObjectState(*row)


def advance_watermark(conn: psycopg.Connection, sobject: str, watermark: datetime) -> None:
    """Move the object's watermark forward (never back) after a run merged its window."""
    conn.execute(warehouse.statement("state/advance_watermark"), {"sobject": sobject, "watermark": watermark})


def remember_fields(conn: psycopg.Connection, sobject: str, fields: list[str]) -> None:
    """The fields a merged run read: the next runs' own, and what tells them a field is new."""
    conn.execute(warehouse.statement("state/remember_fields"), {"sobject": sobject, "fields": fields})


def mark_reconciled(conn: psycopg.Connection, sobject: str) -> None:
    conn.execute("UPDATE sfsync.sync_state SET last_reconciled_at = now() WHERE sobject = %s", [sobject])


def hand_over(conn: psycopg.Connection, sobject: str, watermark: datetime) -> None:
    """Let the object's incremental sync continue from a full load's watermark."""
    conn.execute(warehouse.statement("state/hand_over"), {"sobject": sobject, "watermark": watermark})


# -- The full load's slices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceKey:
    run_id: str
    sobject: str
    start: datetime


@dataclass(frozen=True)
class ObjectCopy:
    """How far a full load run copied one object."""

    sobject: str
    complete: bool
    watermark: datetime
    rows: int


@dataclass(frozen=True)
class FailedSlice:
    sobject: str
    start: datetime
    end: datetime
    error: str


def plan_slice(
    conn: psycopg.Connection,
    key: SliceKey,
    end: datetime,
    watermark: datetime,
    fields: list[str],
    skipped: bool = False,
) -> None:
    """Record a slice to copy, or (``skipped``) an object with nothing to copy, finished at once: it is
    handed over with the others, and holds its incremental DAG back no moment."""
    status, rows = ("skipped", 0) if skipped else ("planned", None)
    conn.execute(
        "INSERT INTO sfsync.full_load_slices"
        " (run_id, sobject, slice_start, slice_end, watermark, fields, status, rows, finished_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) ON CONFLICT DO NOTHING",
        [key.run_id, key.sobject, key.start, end, watermark, fields, status, rows, skipped],
    )


def slices(conn: psycopg.Connection, run_id: str) -> list[dict[str, str]]:
    """A run's slices to copy, as the mapped copy tasks take them."""
    return [
        {"sobject": sobject, "start": start.isoformat(), "end": end.isoformat()}
        for sobject, start, end in conn.execute(
            "SELECT sobject, slice_start, slice_end FROM sfsync.full_load_slices"
            " WHERE run_id = %s AND status <> 'skipped' ORDER BY sobject, slice_start",
            [run_id],
        )
    ]


def planned_objects(conn: psycopg.Connection, run_id: str) -> set[str]:
    """The objects a run has planned, skipped ones included."""
    found = conn.execute("SELECT DISTINCT sobject FROM sfsync.full_load_slices WHERE run_id = %s", [run_id])
    return {sobject for (sobject,) in found}


def slice_fields(conn: psycopg.Connection, key: SliceKey) -> list[str] | None:
    """The fields the plan described for a slice (None for one planned before they were kept)."""
    row = conn.execute(
        "SELECT fields FROM sfsync.full_load_slices WHERE run_id = %s AND sobject = %s AND slice_start = %s",
        [key.run_id, key.sobject, key.start],
    ).fetchone()
    return row[0] if row else None


def mark_slice(
    conn: psycopg.Connection,
    key: SliceKey,
    status: str,
    calls: int = 0,
    rows: int | None = None,
    error: str | None = None,
    attempt: int = 0,
) -> None:
    values = {"status": status, "calls": calls, "rows": rows, "error": error, "attempt": attempt}
    conn.execute(warehouse.statement("state/mark_slice"), asdict(key) | values)


def copies(conn: psycopg.Connection, run_id: str) -> list[ObjectCopy]:
    """Per object of a run: whether every slice is done (or skipped: nothing to copy), the hand-over
    watermark (the earlier of the org's clock when it was planned and the end of what it copied), and the
    rows copied."""
    with conn.cursor(row_factory=class_row(ObjectCopy)) as cursor:
        return cursor.execute(
            "SELECT sobject, bool_and(status IN ('done', 'skipped')) AS complete,"
            " least(min(watermark), max(slice_end)) AS watermark, coalesce(sum(rows), 0)::bigint AS rows"
            " FROM sfsync.full_load_slices WHERE run_id = %s GROUP BY sobject ORDER BY sobject",
            [run_id],
        ).fetchall()


def close_slices(conn: psycopg.Connection, run_id: str) -> list[FailedSlice]:
    """Mark a run's unfinished slices failed, so they no longer hold the incremental DAGs back (they
    continue from their own watermark); those slices, with their error or the status they were left in."""
    with conn.cursor(row_factory=class_row(FailedSlice)) as cursor:
        failed = cursor.execute(
            "SELECT sobject, slice_start AS start, slice_end AS end, coalesce(error, status) AS error"
            " FROM sfsync.full_load_slices WHERE run_id = %s AND status NOT IN ('done', 'skipped')"
            " ORDER BY sobject, slice_start",
            [run_id],
        ).fetchall()
    conn.execute(
        "UPDATE sfsync.full_load_slices SET status = 'failed', finished_at = now()"
        " WHERE run_id = %s AND status NOT IN ('done', 'skipped')",
        [run_id],
    )
    return failed


def full_load_running(conn: psycopg.Connection, sobject: str) -> str | None:
    """The run id of an unfinished full load of ``sobject``, if one is holding its incremental DAG back."""
    row = conn.execute(
        "SELECT run_id FROM sfsync.full_load_slices"
        " WHERE sobject = %s AND finished_at IS NULL AND planned_at > now() - %s LIMIT 1",
        [sobject, FULL_LOAD_TIMEOUT],
    ).fetchone()
    return row[0] if row else None


# -- API usage ----------------------------------------------------------------------------------------


def record_usage(conn: psycopg.Connection, org: str, used: int, limit: int, seen_at: datetime) -> None:
    """Keep what Salesforce reported (an older report never replaces a newer one)."""
    values = {"org": org, "used": used, "max": limit, "seen_at": seen_at}
    conn.execute(warehouse.statement("state/record_api_usage"), values)


def latest_usage(conn: psycopg.Connection) -> Usage | None:
    row = conn.execute(
        "SELECT used, max, now() - seen_at FROM sfsync.api_usage ORDER BY seen_at DESC LIMIT 1"
    ).fetchone()
    return Usage(*row) if row else None
