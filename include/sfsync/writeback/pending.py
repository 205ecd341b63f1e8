"""Pending changes: the outbox entries of the rows due for a push, each row's folded into one ``Change``
(see ``sql/writeback/pending_changes.sql`` for which rows are due)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from sfsync import warehouse
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.registry import SyncObject

#: Rows pushed per run at most (Bulk API 2.0 takes 150 MB a job); a larger backlog takes several runs.
MAX_PUSH_ROWS = 100_000


@dataclass(frozen=True)
class OutboxEntry:
    """One captured change of a row, with the row as it is now and the code its last push failed with."""

    row_id: int
    change_id: int
    operation: str
    sfid: str | None
    changed: dict[str, dict[str, Any]]  # column -> {"old": ..., "new": ...}
    current: dict[str, Any] | None  # None once the row is gone
    last_error: str | None


@dataclass
class Change:
    """A row's pending changes, folded into one write."""

    row_id: int
    change_id: int  # the newest: pushing it settles every older change of the row
    operation: str  # insert, update or delete
    sfid: str | None  # the record written to (a survivor once redirected)
    values: dict[str, Any]  # column -> the warehouse's latest value
    base: dict[str, Any]  # column -> the value the warehouse replaced
    # column -> every value the warehouse wrote since (a crashed push may have sent one)
    trail: dict[str, list[Any]]
    current: dict[str, Any] | None  # the row as it is now
    sobject: str  # the object written to (a converted lead's changes go to its contact)
    last_error: str | None  # the code its last push failed with
    redirected: bool = False
    record: dict[str, Any] = field(default_factory=dict)


def read(conn: psycopg.Connection, entry: SyncObject) -> list[Change]:
    """The due rows' changes, each row's folded into one."""
    waiting = conn.execute(
        "SELECT EXISTS (SELECT FROM sfsync.outbox WHERE sobject = %s AND pushed_at IS NULL)", [entry.sobject]
    ).fetchone()
    if not (waiting and waiting[0]):  # also spares the first run, whose table does not exist yet
        return []
    # A large edit fills the outbox faster than autovacuum counts it: without fresh statistics the planner
    # takes 10,000 pending rows for one and joins them in nested loops (10 s instead of 0.1 s).
    conn.execute("ANALYZE sfsync.outbox")
    query = warehouse.statement("writeback/pending_changes").format(
        table=sql.Identifier(OBJECT_SCHEMA, entry.table)
    )
    with conn.cursor(row_factory=class_row(OutboxEntry)) as cursor:
        entries = cursor.execute(query, {"sobject": entry.sobject, "rows": MAX_PUSH_ROWS}).fetchall()
    return fold(entry.sobject, entries)


def fold(sobject: str, entries: Iterable[OutboxEntry]) -> list[Change]:
    """One ``Change`` a row from its entries (grouped by row, oldest first): the latest value of every
    changed column, and the value that began the current chain of edits of it."""
    changes = []
    for row_id, group in groupby(entries, key=lambda e: e.row_id):
        history = list(group)
        values: dict[str, Any] = {}
        base: dict[str, Any] = {}
        trail: dict[str, list[Any]] = {}
        for entry in history:
            for column, diff in entry.changed.items():
                # A new chain of edits starts unless this edit was made on top of the previous one: in
                # between, a pull wrote Salesforce's value, and that is what this edit replaced.
                if column not in values or values[column] != diff["old"]:
                    base[column], trail[column] = diff["old"], []
                values[column] = diff["new"]
                trail[column].append(diff["new"])
        last = history[-1]
        operation, sfid = last.operation, last.sfid
        if operation != "delete" and last.current is not None:  # a row gone (TRUNCATEd) is settled failed
            sfid = last.current["id"]
            operation = "update" if sfid else "insert"
        changes.append(
            Change(row_id, last.change_id, operation, sfid, values, base, trail, last.current, sobject,
                   last.last_error)
        )  # fmt: skip
    return changes
