"""Conflicts: which value a field keeps when the warehouse and Salesforce both changed it since the last
sync, decided per field (the registry's ``winner``; a field changed on one side only always survives),
and each decision kept in ``sfsync.conflicts``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, time
from decimal import Decimal
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb

from sfsync import soql, state
from sfsync.context import Context
from sfsync.extract import start_of_window
from sfsync.registry import SyncObject
from sfsync.writeback.fields import NOT_SENT, Fields
from sfsync.writeback.pending import Change
from sfsync.writeback.send import COLLECTION_SIZE

log = logging.getLogger(__name__)

#: Salesforce's value of a field is unknown to the push: only the warehouse changed it, as far as it knows.
UNSEEN = object()


def decide(context: Context, entry: SyncObject, fields: Fields, updates: list[Change]) -> None:
    """Drop from the push the fields both sides changed where Salesforce wins, and record each conflict.

    Salesforce is asked for its current values only where it may win. Where the warehouse wins anyway
    no call is spent to look: such a conflict is recorded when a pull has already shown Salesforce's
    value in the row.
    """
    names = fields.names(entry.sobject)

    def winner(column: str) -> str:
        return entry.winner(names.get(column, column))

    contested = sorted({c for u in updates for c in u.values if c in names and winner(c) == "salesforce"})
    latest = _salesforce_values(context, entry, names, updates, [c for c in contested if c not in NOT_SENT])
    record(context.conn, entry.sobject, resolve(updates, latest, winner, fields.types))


def resolve(
    updates: list[Change],
    latest: dict[str, dict[str, Any]],
    winner: Callable[[str], str],
    types: dict[str, str],
) -> list[dict[str, Any]]:
    """The conflicts among ``updates`` given Salesforce's ``latest`` values (by Id, then column), each
    column's ``winner`` and Postgres ``types``; the columns Salesforce wins are dropped from the changes."""
    decided = []
    for change in updates:
        for column in list(change.values):
            seen = salesforce_seen(change, column, latest)
            if seen is UNSEEN or any(
                same(seen, value, types.get(column))
                for value in (change.base.get(column), *change.trail[column])
            ):
                continue  # only the warehouse changed it (a crashed push may have sent one of its values)
            side = winner(column)
            decided.append(row(change, column, seen, side, "changed on both sides"))
            if side == "salesforce":
                del change.values[column]
    return decided


def salesforce_seen(change: Change, column: str, latest: dict[str, dict[str, Any]]) -> Any:
    """Salesforce's value of a column as far as the push can tell without asking: what it returned just
    now, else what a pull wrote over the warehouse's edit since, else nothing new (``UNSEEN``)."""
    record = latest.get(cast(str, change.sfid))
    if record is not None and column in record:
        return record[column]
    if change.current is not None and change.current.get(column) != change.values[column]:
        return change.current.get(column)
    return UNSEEN


def same(salesforce: Any, warehouse_value: Any, pg_type: str | None) -> bool:
    """Equal once the two sides' JSON spellings of the column's type agree (Salesforce writes
    ``2026-01-05T10:00:00.000+0000`` and ``10:00:00.000Z`` where Postgres writes ``...+00:00`` and
    ``10:00:00``; numbers may differ in their trailing zeros)."""
    if salesforce is None or warehouse_value is None or pg_type is None:
        return salesforce == warehouse_value
    if pg_type == "boolean":
        return (
            isinstance(salesforce, bool)
            and isinstance(warehouse_value, bool)
            and salesforce == warehouse_value
        )
    try:
        if pg_type.startswith(("numeric", "bigint", "integer", "double", "real", "smallint")):
            return Decimal(str(salesforce)) == Decimal(str(warehouse_value))
        if pg_type == "timestamptz":
            return datetime.fromisoformat(salesforce) == datetime.fromisoformat(warehouse_value)
        if pg_type == "time":
            return time.fromisoformat(salesforce.rstrip("Z")) == time.fromisoformat(warehouse_value)
    except (ValueError, TypeError, ArithmeticError):
        pass
    return salesforce == warehouse_value


def row(change: Change, column: str, seen: Any, winner: str, reason: str) -> dict[str, Any]:
    """A decision as ``sfsync.conflicts`` keeps it (``record`` adds the object)."""
    return {
        "row_id": change.row_id,
        "change_id": change.change_id,
        "sfid": change.sfid,
        "field": column,
        "base": Jsonb(change.base.get(column)),
        "warehouse": Jsonb(change.values.get(column)),
        "salesforce": Jsonb(None if seen is UNSEEN else seen),
        "winner": winner,
        "reason": reason,
    }


def record(conn: psycopg.Connection, sobject: str, conflicts: list[dict[str, Any]]) -> None:
    if not conflicts:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO sfsync.conflicts (sobject, row_id, change_id, sfid, field, base_value,"
            " warehouse_value, salesforce_value, winner, reason) VALUES (%(sobject)s, %(row_id)s,"
            " %(change_id)s, %(sfid)s, %(field)s, %(base)s, %(warehouse)s, %(salesforce)s, %(winner)s,"
            " %(reason)s) ON CONFLICT DO NOTHING",
            [c | {"sobject": sobject} for c in conflicts],
        )
    for c in conflicts:
        log.info("%s row %s: %s %s: %s wins", sobject, c["row_id"], c["field"], c["reason"], c["winner"])


def _salesforce_values(
    context: Context, entry: SyncObject, names: dict[str, str], updates: list[Change], columns: list[str]
) -> dict[str, dict[str, Any]]:
    """Salesforce's values now, by Id, for the records it changed since the last pull: the only ones
    that can conflict (one call unless Salesforce itself changed many records meanwhile)."""
    if not updates or not columns:
        return {}
    watermark = state.object_state(context.conn, entry.sobject).watermark
    ids = [c.sfid for c in updates if c.sfid] if len(updates) <= COLLECTION_SIZE else None
    since = start_of_window(watermark, context.settings)
    query = soql.changed_since(entry.sobject, [names[c] for c in columns], entry.cursor_field, since, ids)
    latest = {}
    for page in context.sf.query_pages(query, entry.page_size):
        for found in page["records"]:
            latest[found["Id"]] = {k.lower(): v for k, v in found.items() if k != "attributes"}
    return latest
