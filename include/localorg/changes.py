"""Change Data Capture: the change events Salesforce publishes for record changes to the objects selected
for it (``settings.change_data_capture`` in ``org.yaml``). Writes stage their changes on the transaction;
at commit they become events in the store, in that same transaction, numbered by a replay id that only
grows, and kept for 72 hours. The Streaming API (``streaming``) reads them back and delivers them."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .schema import SField, SObject, now_ms

if TYPE_CHECKING:
    from .database import Database, Txn

RETENTION_MS = 72 * 3_600_000
# Left out of every change event: the record's Id (in recordIds), the fields Salesforce's docs name
# (IsDeleted, SystemModstamp) and those derived from other records (LastActivityDate).
_LEFT_OUT = frozenset(
    {"Id", "IsDeleted", "SystemModstamp", "LastActivityDate", "_DeletedDate", "_CascadedFrom"}
)
# Salesforce nests a person's name like an address: Name.FirstName in changedFields.
_NAME_PARTS = ("Salutation", "FirstName", "LastName")
_COMMIT_NUMBER_BASE = 10_700_000_000_000  # commit numbers are large system change numbers that only grow

# The API a change came through, as the header's changeOrigin names it. Empty for changes made outside
# the API (Salesforce leaves it empty for its UI): here admin operations, seeding and the activity generator.
origin: ContextVar[str] = ContextVar("localorg_change_origin", default="")


def api_origin(api: str, version: str, call_options: str | None) -> str:
    """``com/salesforce/api/<api>/<version>``, with ``;client=<id>`` when the request's
    ``Sforce-Call-Options`` header names a client (the way an app recognises its own changes)."""
    options = dict(part.strip().partition("=")[::2] for part in (call_options or "").split(","))
    client = options.get("client")
    return f"com/salesforce/api/{api}/{version}" + (f";client={client}" if client else "")


@dataclass
class Change:
    """One write to a record, staged on its transaction, with the values it wrote (as stored)."""

    entity: str
    record_id: str
    kind: str  # CREATE, UPDATE, DELETE or UNDELETE
    fields: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A stored change event: its payload as a subscriber who sees every field gets it."""

    replay_id: int
    entity: str
    payload: dict[str, Any]


def ensure_table(conn: sqlite3.Connection) -> None:
    # AUTOINCREMENT: a replay id is never reused, even once the events before it have expired.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _change_events (replay_id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "entity TEXT NOT NULL, commit_ts INTEGER NOT NULL, payload TEXT NOT NULL)"
    )


class ChangeCapture:
    """Stages, publishes and reads back the org's change events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.entities = {name.lower() for name in db.definition.settings.change_data_capture}
        self._listeners: set[Callable[[], None]] = set()
        self._lock = threading.Lock()

    def enabled(self, obj: SObject) -> bool:
        return obj.name.lower() in self.entities

    def stage(
        self,
        txn: Txn,
        obj: SObject,
        record_id: str,
        kind: str,
        values: dict[str, Any] | None = None,
        fields: Iterable[str] = (),
    ) -> None:
        """Note a write to a record of ``obj``: the ``values`` it wrote (a new record's whole row) and, for
        an update, the names of the ``fields`` its event reports changed."""
        if self.enabled(obj):
            txn.changes.append(Change(obj.name, record_id, kind, tuple(fields), values or {}))

    def stage_update(
        self,
        txn: Txn,
        obj: SObject,
        record_id: str,
        values: dict[str, Any],
        row: dict[str, Any],
        system: bool,
    ) -> None:
        """Note an update of ``values`` (``row``: with the stamps it wrote): a recycle bin move is a DELETE
        or UNDELETE; a user's change moves LastModifiedDate, which its event includes; a system change of
        only left-out fields is none."""
        if not self.enabled(obj):
            return
        if "IsDeleted" in values:
            self.stage(txn, obj, record_id, "DELETE" if values["IsDeleted"] else "UNDELETE")
            return
        fields = [name for name in values if name not in _LEFT_OUT]
        if fields or not system:
            changed = [*fields, *(() if system else ("LastModifiedDate",))]
            self.stage(txn, obj, record_id, "UPDATE", row, changed)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, txn: Txn) -> bool:
        """Store the transaction's change events (call before it commits); whether there were any.

        As Salesforce does, several writes to one record in a transaction make one event of the first
        change type with the values committed at the end; but a record deleted after an update (a merge's
        duplicate) is published as deleted."""
        if not txn.changes:
            return False
        merged: dict[tuple[str, str], Change] = {}
        for change in txn.changes:
            event = merged.setdefault(
                (change.entity, change.record_id), Change(change.entity, change.record_id, change.kind)
            )
            if change.kind == "DELETE" and event.kind == "UPDATE":
                event.kind = "DELETE"
            event.fields += tuple(f for f in change.fields if f not in event.fields)
            event.values.update(change.values)  # the values the record has at commit
        txn.changes.clear()
        first = self.latest(txn.conn) + 1
        key = str(uuid.uuid4())
        change_origin = origin.get()
        rows = []
        for sequence, change in enumerate(merged.values(), 1):
            obj = self.db.schema.objects[change.entity.lower()]
            body, changed = _body(obj, change)
            header = {
                "entityName": obj.name,
                "recordIds": [change.record_id],
                "changeType": change.kind,
                "changeOrigin": change_origin,
                "transactionKey": key,
                "sequenceNumber": sequence,
                "commitTimestamp": txn.ts,
                "commitNumber": _COMMIT_NUMBER_BASE + first,
                "commitUser": txn.user.id,
                "changedFields": changed,
            }
            payload = json.dumps({"ChangeEventHeader": header, **body}, separators=(",", ":"))
            rows.append((first + sequence - 1, obj.name, txn.ts, payload))
        txn.conn.executemany("INSERT INTO _change_events VALUES (?, ?, ?, ?)", rows)
        return True

    # -- waking subscribers ----------------------------------------------------------------------

    def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from the committing thread) whenever events are published."""
        with self._lock:
            self._listeners.add(wake)

    def forget(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.discard(wake)

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for wake in listeners:
            wake()

    # -- reading back ----------------------------------------------------------------------------

    def since(self, after: int, entities: Iterable[str] | None, limit: int) -> list[Event]:
        """Retained events after replay id ``after`` (of ``entities`` only, if given), oldest first."""
        sql = "SELECT replay_id, entity, payload FROM _change_events WHERE replay_id > ? AND commit_ts >= ?"
        params: list[Any] = [after, now_ms() - RETENTION_MS]
        if entities is not None:
            names = list(entities)
            sql += f" AND entity IN ({', '.join('?' * len(names))})"
            params += names
        rows = self.db.conn().execute(sql + " ORDER BY replay_id LIMIT ?", (*params, limit))
        return [Event(replay_id, entity, json.loads(payload)) for replay_id, entity, payload in rows]

    def retained(self, replay_id: int) -> bool:
        """Whether the event with this replay id is still within the retention window."""
        sql = "SELECT 1 FROM _change_events WHERE replay_id = ? AND commit_ts >= ?"
        return self.db.conn().execute(sql, (replay_id, now_ms() - RETENTION_MS)).fetchone() is not None

    def latest(self, conn: sqlite3.Connection | None = None) -> int:
        """The replay id of the newest event published (0 before any)."""
        sql = "SELECT seq FROM sqlite_sequence WHERE name = '_change_events'"
        row = (conn or self.db.conn()).execute(sql).fetchone()
        return int(row[0]) if row else 0

    def expire(self) -> int:
        """Drop the events older than the retention window; how many."""
        with self.db.write_lock:
            sql = "DELETE FROM _change_events WHERE commit_ts < ?"
            return self.db.conn().execute(sql, (now_ms() - RETENTION_MS,)).rowcount


def _body(obj: SObject, change: Change) -> tuple[dict[str, Any], list[str]]:
    """The event's record fields and its changedFields: every non-null field of a new record, the
    changed ones of an update, none for a delete or an undelete. Compound fields nest."""
    if change.kind in ("DELETE", "UNDELETE"):
        return {}, []
    values = change.values
    names = [n for n, v in values.items() if v is not None] if change.kind == "CREATE" else change.fields
    body: dict[str, Any] = {}
    paths = []
    for name in names:
        f = obj.field(name)
        if f is None or name in _LEFT_OUT:
            continue
        value = _event_value(f, values.get(f.name))
        compound = _compound(obj, f)
        if compound is None:
            body[f.name] = value
            paths.append(f.name)
        else:
            body.setdefault(compound[0], {})[compound[1]] = value
            paths.append(".".join(compound))
    return body, paths if change.kind == "UPDATE" else []


def _event_value(f: SField, value: Any) -> Any:
    """A stored value as change events carry it: datetimes to the second with a Z, as CometD delivers them."""
    if f.type == "datetime" and value is not None:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value // 1000))
    decode = f.decoder()
    return decode(value) if decode is not None else value


def _compound(obj: SObject, f: SField) -> tuple[str, str] | None:
    """(compound field, component key) of a component field: BillingCity -> (BillingAddress, City),
    Lead.FirstName -> (Name, FirstName); None for a field of its own."""
    if f.compound_name is not None:
        parent = obj.field(f.compound_name)
        assert parent is not None
        key = next(k for k, part in parent.components if part is f)
        return parent.name, key[:1].upper() + key[1:]
    name = obj.field("Name")
    if f.name in _NAME_PARTS and name is not None and name.derived:
        return "Name", f.name
    return None
