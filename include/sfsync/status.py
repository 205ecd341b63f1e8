"""The sync's health as its users see it: per object, per run and org-wide, with the actions they may take.

Read by the status page (``sfsync.ui``) and its JSON and Prometheus endpoints. It reads the bookkeeping
that ``state`` writes, and what the event watchers say of themselves (``watchers``), and writes only what
users do here: an error retried now or dismissed, and each action, with who did it and when
(``sfsync.actions``). An object's health says which threshold of the registry's settings it passed: late
(amber), then failing (red); an object with events whose watcher fails or is silent is late too, as it
syncs on its schedule alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from sfsync import budget, state
from sfsync.defaults import FULL_LOAD_TIMEOUT, SYNC_SCHEDULE
from sfsync.registry import Registry, SyncObject, SyncSettings
from sfsync.warehouse import statement
from sfsync.watchers import CHANGE_EVENTS, FOLLOWING, SILENT_SECONDS, WAREHOUSE_EDITS, sources
from sfsync.watchers import FAILING as WATCHER_FAILING

HEALTHY, LATE, FAILING = "healthy", "late", "failing"
#: What a run's status says, in its users' words.
SUCCEEDED = frozenset({"merged", "reconciled", "pushed"})
FAILED = frozenset({"failed", "abandoned"})
#: Recent runs and decided conflicts shown for one object.
RECENT = 50
#: Time buckets of the charts, by the days they cover.
BUCKETS = {1: timedelta(hours=1), 7: timedelta(hours=6)}
#: A watcher no triggerer runs (it was not heard from for SILENT_SECONDS, or never).
NOT_RUNNING = "not running"
#: What each watcher follows, in words.
WATCHED = {CHANGE_EVENTS: "Salesforce change events", WAREHOUSE_EDITS: "warehouse edits"}


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run_id: str
    direction: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    message: str | None


@dataclasses.dataclass(frozen=True)
class FullLoadProgress:
    run_id: str
    slices_done: int
    slices_total: int
    rows: int


@dataclasses.dataclass(frozen=True)
class WatcherStatus:
    """One event watcher of an object, as it last recorded itself (``sfsync.watchers``)."""

    source: str  # change_events | warehouse_edits
    state: str  # following | failing | not running
    since: datetime | None  # when it began following or failing
    error: str | None  # its last error, in words (kept once it follows again)
    retry_at: datetime | None  # when a failing watcher tries again
    woken_at: datetime | None
    wakes: int
    checked_at: datetime | None  # when it was last heard from


@dataclasses.dataclass(frozen=True)
class ObjectStatus:
    sobject: str
    table: str
    direction: str
    dag_id: str
    health: str
    reasons: tuple[str, ...]  # why it is not healthy, in words (empty when healthy)
    last_run: RunSummary | None
    last_success_at: datetime | None
    lag_seconds: float | None  # now minus the watermark; None before the first sync
    rows_in_24h: int
    rows_out_24h: int
    backlog: int  # changes made in the warehouse, waiting for their push
    oldest_pending_seconds: float | None
    open_errors: int
    full_load: FullLoadProgress | None
    api_calls_24h: int = 0
    watchers: tuple[WatcherStatus, ...] = ()  # objects with events: what wakes their DAG


@dataclasses.dataclass(frozen=True)
class Point:
    """One time bucket of an object's runs."""

    at: datetime
    rows_in: int
    rows_out: int
    seconds: float  # the pull's mean duration
    api_calls: int


@dataclasses.dataclass(frozen=True)
class RunRow:
    run_id: str
    direction: str
    status: str
    new: int
    updated: int
    deleted: int
    skipped: int
    failed: int
    api_calls: int
    started_at: datetime
    seconds: float | None
    message: str | None


@dataclasses.dataclass(frozen=True)
class ErrorRow:
    row_id: int
    sfid: str | None
    operation: str
    status_code: str
    message: str
    fields: tuple[str, ...]
    transient: bool
    attempts: int
    first_seen: datetime
    last_seen: datetime
    next_attempt_at: datetime | None  # None: waits for the row to change (someone fixes it)


@dataclasses.dataclass(frozen=True)
class ConflictRow:
    row_id: int
    sfid: str | None
    field: str
    warehouse_value: Any
    salesforce_value: Any
    winner: str
    reason: str
    decided_at: datetime


@dataclasses.dataclass(frozen=True)
class ObjectDetail:
    status: ObjectStatus
    series: tuple[Point, ...]
    runs: tuple[RunRow, ...]
    errors: tuple[ErrorRow, ...]
    conflicts: tuple[ConflictRow, ...]


@dataclasses.dataclass(frozen=True)
class OrgStatus:
    org: str | None
    used: int | None
    limit: int | None
    budget_share: float
    holding: bool  # the budget guard holds runs back
    seen_at: datetime | None
    skipped_runs_24h: int


def overview(conn: psycopg.Connection, registry: Registry) -> list[ObjectStatus]:
    """One status per enabled registry object, by object name."""
    return _statuses(conn, registry.settings, list(registry.enabled()))


def object_status(conn: psycopg.Connection, registry: Registry, sobject: str) -> ObjectStatus:
    """One object's status."""
    (found,) = _statuses(conn, registry.settings, [registry.get(sobject)])
    return found


def object_detail(conn: psycopg.Connection, registry: Registry, sobject: str, days: int = 1) -> ObjectDetail:
    """One object's status, its runs over ``days`` (1 or 7) in time buckets, its recent runs, its open errors
    and its recently decided conflicts."""
    if days not in BUCKETS:
        raise ValueError(f"days must be one of {sorted(BUCKETS)}, not {days}")
    entry = registry.get(sobject)
    status = object_status(conn, registry, sobject)
    period = {"sobject": entry.sobject, "bucket": BUCKETS[days], "period": timedelta(days=days)}
    with conn.cursor(row_factory=class_row(Point)) as cursor:
        series = cursor.execute(statement("status/series"), period).fetchall()
    with conn.cursor(row_factory=class_row(RunRow)) as cursor:
        runs = cursor.execute(
            "SELECT run_id, direction, status, new, updated, deleted, skipped, failed, api_calls, started_at,"
            " extract(epoch FROM duration)::float8 AS seconds, message FROM sfsync.sync_runs"
            " WHERE sobject = %s ORDER BY started_at DESC LIMIT %s",
            [entry.sobject, RECENT],
        ).fetchall()
    with conn.cursor(row_factory=class_row(ErrorRow)) as cursor:
        errors = cursor.execute(
            "SELECT row_id, sfid, operation, status_code, message, fields, transient, attempts, first_seen,"
            " last_seen, CASE WHEN transient THEN next_attempt_at END AS next_attempt_at"
            " FROM sfsync.sync_errors WHERE sobject = %s AND dismissed_at IS NULL ORDER BY last_seen DESC",
            [entry.sobject],
        ).fetchall()
    with conn.cursor(row_factory=class_row(ConflictRow)) as cursor:
        conflicts = cursor.execute(
            "SELECT row_id, sfid, field, warehouse_value, salesforce_value, winner, reason, decided_at"
            " FROM sfsync.conflicts WHERE sobject = %s ORDER BY decided_at DESC LIMIT %s",
            [entry.sobject, RECENT],
        ).fetchall()
    fixed = [dataclasses.replace(e, fields=tuple(e.fields)) for e in errors]
    return ObjectDetail(status, tuple(series), tuple(runs), tuple(fixed), tuple(conflicts))


def org_status(conn: psycopg.Connection, registry: Registry) -> OrgStatus:
    """The org's daily API requests as Salesforce last said, and whether the guard holds runs back."""
    share = registry.settings.api_budget_share
    row = conn.execute(
        "SELECT u.org, u.used, u.max, u.seen_at, now() - u.seen_at,"
        " (SELECT count(*) FROM sfsync.sync_runs WHERE status = 'skipped'"
        "  AND started_at >= now() - interval '24 hours')"
        " FROM (SELECT 1) one"
        " LEFT JOIN (SELECT * FROM sfsync.api_usage ORDER BY seen_at DESC LIMIT 1) u ON true"
    ).fetchone()
    assert row is not None
    org, used, limit, seen_at, age, skipped = row
    usage = state.Usage(used, limit, age) if used is not None else None
    return OrgStatus(org, used, limit, share, budget.judge(usage, share).over, seen_at, skipped)


def retry_now(conn: psycopg.Connection, sobject: str, row_id: int, user: str) -> bool:
    """Make a transient error that waits out its backoff due at the next push; False when there is none."""
    with conn.transaction():
        retried = conn.execute(
            "UPDATE sfsync.sync_errors SET next_attempt_at = now()"
            " WHERE sobject = %s AND row_id = %s AND transient AND next_attempt_at > now()",
            [sobject, row_id],
        ).rowcount
        if retried:
            record_action(conn, "retry now", sobject, user, row_id=row_id)
    return bool(retried)


def dismiss(conn: psycopg.Connection, sobject: str, row_id: int, user: str) -> bool:
    """Mark an open error handled by ``user``: it no longer counts as open; False when there is none."""
    with conn.transaction():
        dismissed = conn.execute(
            "UPDATE sfsync.sync_errors SET dismissed_at = now(), dismissed_by = %s"
            " WHERE sobject = %s AND row_id = %s AND dismissed_at IS NULL",
            [user, sobject, row_id],
        ).rowcount
        if dismissed:
            record_action(conn, "dismiss", sobject, user, row_id=row_id)
    return bool(dismissed)


def record_action(
    conn: psycopg.Connection,
    action: str,
    sobject: str,
    user: str,
    detail: str | None = None,
    row_id: int | None = None,
) -> None:
    """Keep what a user did on the status page, and who (``sfsync.actions``)."""
    conn.execute(
        "INSERT INTO sfsync.actions (action, sobject, row_id, username, detail) VALUES (%s, %s, %s, %s, %s)",
        [action, sobject, row_id, user, detail],
    )


def watcher_status(source: str, recorded: dict[str, Any] | None) -> WatcherStatus:
    """A watcher as its row says (``status/watchers``); ``not running`` when it was not heard from for
    SILENT_SECONDS, or never: no triggerer runs it."""
    if recorded is None:
        return WatcherStatus(source, NOT_RUNNING, None, None, None, None, 0, None)
    silent = recorded["silent_seconds"] >= SILENT_SECONDS
    return WatcherStatus(
        source,
        NOT_RUNNING if silent else recorded["state"],
        recorded["since"],
        recorded["error"],
        recorded["retry_at"] if recorded["state"] == WATCHER_FAILING and not silent else None,
        recorded["woken_at"],
        recorded["wakes"],
        recorded["checked_at"],
    )


def health(
    settings: SyncSettings,
    lag_seconds: float | None,
    open_errors: int,
    oldest_pending_seconds: float | None,
    last_run: RunSummary | None,
    watchers: Sequence[WatcherStatus] = (),
    schedule: str = SYNC_SCHEDULE,
    now: datetime | None = None,
) -> tuple[str, tuple[str, ...]]:
    """An object's health by the registry's thresholds, and the reasons it is not healthy. A watcher that
    fails or does not run makes it late: it syncs on ``schedule`` alone."""
    failing, late = [], []
    lag = (lag_seconds or 0) / 60
    if lag >= settings.lag_failing_minutes:
        failing.append(f"{_minutes(lag)} behind Salesforce")
    elif lag >= settings.lag_late_minutes:
        late.append(f"{_minutes(lag)} behind Salesforce")
    if open_errors >= settings.errors_failing:
        failing.append(f"{open_errors} open errors")
    elif open_errors >= settings.errors_late:
        late.append(f"{open_errors} open error{'s' if open_errors > 1 else ''}")
    if oldest_pending_seconds is not None and oldest_pending_seconds / 60 >= settings.backlog_late_minutes:
        late.append(f"a warehouse change waiting {_minutes(oldest_pending_seconds / 60)} for its push")
    if last_run and last_run.status in FAILED:
        failing.append(
            f"its last {last_run.direction} run {last_run.status}: {last_run.message or 'no message'}"
        )
    now = now or datetime.now(UTC)
    for watcher in watchers:
        what, fallback = WATCHED.get(watcher.source, watcher.source), f"syncing on {_schedule(schedule)}"
        if watcher.state == WATCHER_FAILING:
            error = watcher.error or "no error recorded"
            late.append(f"{what} failing since {_clock(watcher.since, now)} ({error}): {fallback}")
        elif watcher.state == NOT_RUNNING:
            heard = f"since {_clock(watcher.checked_at, now)}" if watcher.checked_at else "yet"
            late.append(
                f"{what} not watched: no word from the triggerer {heard} (is it running, and the DAG"
                f" unpaused?): {fallback}"
            )
    return (FAILING if failing else LATE if late else HEALTHY), tuple(failing + late)


def prometheus(objects: Iterable[ObjectStatus], org: OrgStatus) -> str:
    """The numbers an alerting system watches, in Prometheus' text exposition format."""
    objects = list(objects)
    gauges: list[tuple[str, str, list[tuple[str, float | None]]]] = [
        ("sfsync_lag_seconds", "How far the warehouse is behind Salesforce: now minus the watermark.",
         [(o.sobject, o.lag_seconds) for o in objects]),
        ("sfsync_writeback_backlog", "Warehouse changes waiting for their push.",
         [(o.sobject, o.backlog) for o in objects]),
        ("sfsync_writeback_oldest_pending_seconds", "Age of the oldest change waiting for its push.",
         [(o.sobject, o.oldest_pending_seconds or 0) for o in objects]),
        ("sfsync_open_errors", "Record errors not yet resolved or dismissed.",
         [(o.sobject, o.open_errors) for o in objects]),
        ("sfsync_rows_in_24h", "Rows written into the warehouse in the last 24 hours.",
         [(o.sobject, o.rows_in_24h) for o in objects]),
        ("sfsync_rows_out_24h", "Records written to Salesforce in the last 24 hours.",
         [(o.sobject, o.rows_out_24h) for o in objects]),
        ("sfsync_api_calls_24h", "Salesforce API calls made in the last 24 hours.",
         [(o.sobject, o.api_calls_24h) for o in objects]),
        ("sfsync_healthy", "1 when the object passes none of the registry's health thresholds.",
         [(o.sobject, float(o.health == HEALTHY)) for o in objects]),
    ]  # fmt: skip
    lines = []
    for name, about, values in gauges:
        lines += [f"# HELP {name} {about}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{object="{_label(s)}"}} {_number(v)}' for s, v in values if v is not None]
    name = "sfsync_watcher_following"
    lines += [
        f"# HELP {name} 1 while the event watcher follows its source; 0 while it fails or does not run.",
        f"# TYPE {name} gauge",
    ]
    lines += [
        f'{name}{{object="{_label(o.sobject)}",source="{_label(w.source)}"}} {_number(w.state == FOLLOWING)}'
        for o in objects
        for w in o.watchers
    ]
    for name, about, value in (
        (
            "sfsync_org_api_requests_used",
            "The org's API requests used today, as Salesforce last said.",
            org.used,
        ),
        ("sfsync_org_api_requests_limit", "The org's daily API request limit.", org.limit),
        ("sfsync_budget_holding", "1 while the API budget guard holds runs back.", float(org.holding)),
    ):
        if value is not None:
            lines += [f"# HELP {name} {about}", f"# TYPE {name} gauge", f"{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> Any:
    """Dataclasses, tuples, datetimes and decimals as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    json.dumps(value)  # anything else must be JSON already
    return value


def _statuses(
    conn: psycopg.Connection, settings: SyncSettings, entries: list[SyncObject]
) -> list[ObjectStatus]:
    by_name = {entry.sobject: entry for entry in entries}
    rows = conn.execute(
        statement("status/objects"),
        {"objects": list(by_name), "full_load_timeout": FULL_LOAD_TIMEOUT},
    ).fetchall()
    recorded: dict[tuple[str, str], dict[str, Any]] = {}
    if watched := [entry.sobject for entry in entries if entry.events]:
        with conn.cursor(row_factory=dict_row) as cursor:
            for found in cursor.execute(statement("status/watchers"), {"objects": watched}):
                recorded[found["sobject"], found["source"]] = found
    statuses = []
    for row in rows:
        (sobject, run_id, direction, run_status, started, finished, message, last_success, lag, rows_in,
         rows_out, calls, backlog, oldest, open_errors, load_run, done, total, load_rows) = row  # fmt: skip
        entry = by_name[sobject]
        last_run = RunSummary(run_id, direction, run_status, started, finished, message) if run_id else None
        watchers = tuple(watcher_status(s, recorded.get((sobject, s))) for s in sources(entry))
        verdict, reasons = health(settings, lag, open_errors, oldest, last_run, watchers, entry.schedule)
        load = FullLoadProgress(load_run, done, total, load_rows) if load_run else None
        statuses.append(
            ObjectStatus(
                entry.sobject,
                entry.table,
                entry.direction,
                entry.dag_id,
                verdict,
                reasons,
                last_run,
                last_success,
                lag,
                rows_in,
                rows_out,
                backlog,
                oldest,
                open_errors,
                load,
                calls,
                watchers,
            )  # fmt: skip
        )
    return statuses


def _schedule(schedule: str) -> str:
    """A schedule in words: ``*/5 * * * *`` is "the 5-minute schedule"."""
    if every := re.fullmatch(r"\*/(\d+) \* \* \* \*", schedule):
        return f"the {every[1]}-minute schedule"
    return f"its schedule ({schedule})"


def _clock(at: datetime | None, now: datetime) -> str:
    """A time of day in UTC, with its date when that is not today."""
    if at is None:
        return "an unknown time"
    at = at.astimezone(UTC)
    return at.strftime("%H:%M UTC" if at.date() == now.astimezone(UTC).date() else "%Y-%m-%d %H:%M UTC")


def _minutes(minutes: float) -> str:
    if minutes >= 120:
        return f"{minutes / 60:.0f} hours"
    return f"{minutes:.0f} minutes"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    return repr(float(value)) if value is not None else "NaN"
