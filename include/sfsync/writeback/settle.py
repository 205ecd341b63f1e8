"""Settling: each record's outcome kept in the warehouse, one call's outcomes in one transaction. A success
marks the row's outbox entries pushed (and gives an insert's row its new record); a failure goes to
``sfsync.sync_errors`` with Salesforce's code and message, and is retried: after a doubling backoff for
transient codes, after the row changes again for the others. Nothing is dropped.

An outcome is shaped like an sObject Collections result: ``success``, and ``id`` or ``errors``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import psycopg

from sfsync import state, warehouse, warehouse_key
from sfsync.registry import SyncObject, SyncSettings
from sfsync.writeback.pending import Change

log = logging.getLogger(__name__)

Outcome = dict[str, Any]
#: Failures worth retrying as they are: the record itself is fine.
TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "API_TEMPORARILY_UNAVAILABLE",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "NOT_PROCESSED",
        "REQUEST_FAILED",
    }
)
#: The outcome of a change with nothing left to send, or already done in Salesforce.
UNCHANGED: Outcome = {"success": True, "unchanged": True}
COUNTERS = {"insert": "new", "update": "updated", "delete": "deleted"}


def failure(code: str, message: str) -> Outcome:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}


def codes(outcome: Outcome) -> set[str]:
    return {e.get("statusCode") for e in outcome.get("errors") or []} if not outcome.get("success") else set()


def as_settled(change: Change, outcome: Outcome) -> Outcome:
    """A delete of a record Salesforce already deleted (a retry, a delete on both sides) has its way."""
    if change.operation == "delete" and codes(outcome) == {"ENTITY_IS_DELETED"}:
        return UNCHANGED
    return outcome


def counter(change: Change, outcome: Outcome) -> str:
    """The run's counter a success adds to."""
    return "skipped" if outcome.get("unchanged") else COUNTERS[change.operation]


def error_row(sobject: str, change: Change, outcome: Outcome, settings: SyncSettings) -> dict[str, Any]:
    """A failure as ``sql/writeback/record_push_error.sql`` keeps it, which doubles the wait per attempt."""
    error = (outcome.get("errors") or [{}])[0]
    code = error.get("statusCode") or "UNKNOWN"
    return {
        "sobject": sobject,
        "row_id": change.row_id,
        "change_id": change.change_id,
        "sfid": change.sfid,
        "operation": change.operation,
        "status_code": code,
        "message": error.get("message") or str(outcome),
        "fields": error.get("fields") or [],
        "transient": code in TRANSIENT_CODES,
        "retry_after": settings.retry_after_seconds,
        "retry_cap": settings.retry_cap_seconds,
    }


class Settler:
    """Settles a push's outcomes as they come, counting the failures' codes for the run's summary."""

    def __init__(
        self, conn: psycopg.Connection, entry: SyncObject, settings: SyncSettings, run: state.RunKey
    ) -> None:
        self.conn, self.entry, self.settings, self.run = conn, entry, settings, run
        self.codes: Counter[str] = Counter()

    def summary(self) -> str | None:
        return ", ".join(f"{code} x{n}" for code, n in self.codes.most_common()) or None

    def __call__(self, outcomes: list[tuple[Change, Outcome]]) -> None:
        """Record one call's results in one transaction: pushed changes, new Ids, and failures."""
        if not outcomes:
            return
        with self.conn.transaction():
            outcomes = self._claim([(c, as_settled(c, o)) for c, o in outcomes])
            done = [(c, o) for c, o in outcomes if o.get("success")]
            failed = [(c, o) for c, o in outcomes if not o.get("success")]
            self._mark_pushed([c for c, _ in done])
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    warehouse.statement("writeback/record_push_error"),
                    [error_row(self.entry.sobject, c, o, self.settings) for c, o in failed],
                )
            counted = Counter(counter(c, o) for c, o in done)
            state.count_push(self.conn, self.run, dict(counted), len(failed))
        for change, outcome in failed:
            error = outcome["errors"][0]
            self.codes[error["statusCode"]] += 1
            log.warning(
                "%s row %s (%s %s): %s: %s", self.entry.sobject, change.row_id, change.operation,
                change.sfid or "new", error["statusCode"], error["message"],
            )  # fmt: skip

    def _claim(self, outcomes: list[tuple[Change, Outcome]]) -> list[tuple[Change, Outcome]]:
        """Give inserted rows their new records (``warehouse_key.claim``). A row whose record a twin with
        changes still waiting holds fails, so that it keeps waiting and says why."""
        created = [(c.row_id, o["id"]) for c, o in outcomes if o.get("success") and c.operation == "insert"]
        held = set(warehouse_key.claim(self.conn, self.entry.sobject, self.entry.table, created))
        return [
            (c, failure("DUPLICATE_VALUE", f"record {o['id']} is in another row, whose edits wait"))
            if c.operation == "insert" and c.row_id in held
            else (c, o)
            for c, o in outcomes
        ]

    def _mark_pushed(self, done: list[Change]) -> None:
        """Settle every outbox entry up to each change's newest, and clear the rows' past errors."""
        self.conn.execute(
            "UPDATE sfsync.outbox o SET pushed_at = now(), pushed_to = d.pushed_to"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS d(row_id, change_id, pushed_to)"
            " WHERE o.sobject = %s AND o.row_id = d.row_id AND o.change_id <= d.change_id"
            " AND o.pushed_at IS NULL",
            [
                [c.row_id for c in done],
                [c.change_id for c in done],
                [c.sfid if c.redirected else None for c in done],
                self.entry.sobject,
            ],
        )
        self.conn.execute(
            "DELETE FROM sfsync.sync_errors WHERE sobject = %s AND row_id = ANY(%s)",
            [self.entry.sobject, [c.row_id for c in done]],
        )
