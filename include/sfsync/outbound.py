"""Warehouse to Salesforce: push the changes captured in ``sfsync.outbox`` for one bidirectional object.

Runs before the object's pull, in the same DAG run:

1. Each due row's pending changes are folded into one: the warehouse's latest value of every changed
   column, and the value it replaced (what the sync had last written there).
2. Conflicts are decided per field. A field Salesforce also changed since then keeps the registry's
   winner (``SyncObject.winner``: the warehouse for Lead, Salesforce for Contact by default); fields changed
   on one side only always survive. Decisions are kept in ``sfsync.conflicts``.
3. Updates and deletes go through sObject Collections (200 a call) or, above the registry's
   ``bulk_threshold``, one Bulk API 2.0 ingest job. Inserts are upserts on the warehouse key
   (``warehouse_id_field``) where the org has it, so a retried push never creates a twin; their new Ids
   are written back to the rows. A Lead's first push fills the default LastName and Company.
4. A change to a record that a merge or a conversion replaced is written to the survivor (MasterRecordId,
   ConvertedContactId), whether the warehouse already knew or Salesforce says so now.
5. Every record's result is settled: a success marks its outbox entries pushed; a failure lands in
   ``sfsync.sync_errors`` with Salesforce's code and message and is retried: after a doubling backoff for
   transient codes, after the row changes again for the others. Nothing is dropped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import partial
from itertools import groupby
from typing import Any, cast

import psycopg
import requests
from psycopg import sql
from psycopg.types.json import Jsonb
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sfsync import ingest, locks, soql, state, tables, warehouse, warehouse_key
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.registry import SyncObject, SyncSettings
from sfsync.salesforce import Salesforce

log = logging.getLogger(__name__)

OUTBOUND = "outbound"
COLLECTION_SIZE = 200
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
#: A Salesforce Id, 15 or 18 characters: anything else in an ``id`` column is refused before it reaches SOQL.
SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
#: Salesforce's answers for a record that a merge or a conversion replaced while a change waited.
REPLACED_CODES = frozenset({"ENTITY_IS_DELETED", "CANNOT_UPDATE_CONVERTED_LEAD"})
#: A survivor can itself be merged away before the change lands: follow at most this many hops.
MAX_REDIRECTS = 3
NOT_SENT = ("id", "isdeleted")
#: Rows pushed per run at most (Bulk API 2.0 takes 150 MB a job); a larger backlog takes several runs.
MAX_PUSH_ROWS = 100_000


@dataclass
class Change:
    """A row's pending changes, folded into one write."""

    row_id: int
    change_id: int  # the newest: pushing it settles every older change of the row
    operation: str  # insert, update or delete
    sfid: str | None  # the record written to (a survivor once redirected)
    values: dict[str, Any]  # column -> the warehouse's latest value
    base: dict[str, Any]  # column -> the value the warehouse replaced
    trail: dict[
        str, list[Any]
    ]  # column -> every value the warehouse wrote since (a crashed push may have sent one)
    current: dict[str, Any] | None  # the row as it is now
    sobject: str  # the object written to (a converted lead's changes go to its contact)
    last_error: str | None  # the code its last push failed with
    redirected: bool = False
    record: dict[str, Any] = field(default_factory=dict)


def push(context: Any, entry: SyncObject) -> dict[str, Any]:
    """Send this object's pending warehouse changes to Salesforce; return the run's counters."""
    key = state.RunKey(context.run_id, entry.sobject, OUTBOUND)
    conn, settings = context.conn, context.settings
    with locks.holding(conn, entry.sobject, OUTBOUND):
        changes = _pending(conn, entry)
        if not changes:
            return {"status": "nothing to push", "new": 0, "updated": 0, "deleted": 0, "failed": 0}
        for stale in state.abandon_stale_runs(conn, key):
            log.warning("%s: push %s never finished: marked abandoned", entry.sobject, stale)
        state.start_run(conn, key, "pushing")
        sf: Salesforce | None = None
        try:
            sf = context.sf
            pusher = _Pusher(conn, sf, entry, settings, key)
            pusher.run(changes)
        except Exception as error:  # kept with the run, and the task fails; the pull runs all the same
            why = f"{type(error).__name__}: {error}"[:2000]
            state.finish_push(conn, key, "failed", sf.meter.calls if sf else 0, why)
            raise
        counters = state.finish_push(conn, key, "pushed", sf.meter.calls, pusher.summary())
    log.info(
        "%s: pushed %d new, %d updated, %d deleted, %d unchanged, %d failed with %d API calls%s",
        entry.sobject, counters["new"], counters["updated"], counters["deleted"], counters["skipped"],
        counters["failed"], sf.meter.calls, f" ({pusher.summary()})" if counters["failed"] else "",
    )  # fmt: skip
    return {"status": "pushed", **counters, "api_calls": sf.meter.calls}


def _pending(conn: psycopg.Connection, entry: SyncObject) -> list[Change]:
    """The due rows' changes, each row's folded into one (see ``state/pending_changes.sql``)."""
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
    rows = conn.execute(query, {"sobject": entry.sobject, "rows": MAX_PUSH_ROWS}).fetchall()
    changes = []
    for row_id, group in groupby(rows, key=lambda row: row[0]):
        history = list(group)
        values: dict[str, Any] = {}
        base: dict[str, Any] = {}
        trail: dict[str, list[Any]] = {}
        for *_, changed, _current, _error in history:
            for column, diff in changed.items():
                # A new chain of edits starts unless this edit was made on top of the previous one: in
                # between, a pull wrote Salesforce's value, and that is what this edit replaced.
                if column not in values or values[column] != diff["old"]:
                    base[column], trail[column] = diff["old"], []
                values[column] = diff["new"]
                trail[column].append(diff["new"])
        _, change_id, operation, sfid, _, current, last_error = history[-1]
        if operation != "delete" and current is not None:  # a row gone (TRUNCATEd) is settled as a failure
            sfid = current["id"]
            operation = "update" if sfid else "insert"
        changes.append(
            Change(
                row_id, change_id, operation, sfid, values, base, trail, current, entry.sobject, last_error
            )
        )
    return changes


class _Pusher:
    """One push: decides, sends and settles, counting as it goes."""

    def __init__(
        self,
        conn: psycopg.Connection,
        sf: Salesforce,
        entry: SyncObject,
        settings: SyncSettings,
        run: state.RunKey,
    ) -> None:
        self.conn, self.sf, self.entry, self.settings, self.run_key = conn, sf, entry, settings, run
        self.codes: Counter[str] = Counter()
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self._names: dict[str, dict[str, str]] = {}
        self.types = tables.table_columns(conn, entry.table)  # column -> Postgres type
        self.key_column = settings.warehouse_key_column

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """An object's fields by lower-case name, described once per push."""
        if sobject not in self._described:
            describe = self.sf.describe(sobject)
            self._described[sobject] = {f["name"].lower(): f for f in describe["fields"]}
        return self._described[sobject]

    def names(self, sobject: str) -> dict[str, str]:
        """API names by column. The object's own come from its last pull, which costs no call: only
        inserts (the warehouse key) and redirects to another object need a describe."""
        if sobject not in self._names:
            known = state.object_state(self.conn, sobject).fields
            if sobject == self.entry.sobject and known:
                self._names[sobject] = {name.lower(): name for name in known}
            else:
                self._names[sobject] = {column: f["name"] for column, f in self.fields(sobject).items()}
        return self._names[sobject]

    def summary(self) -> str | None:
        return ", ".join(f"{code} x{n}" for code, n in self.codes.most_common()) or None

    def run(self, changes: list[Change]) -> None:
        refused = [(c, why) for c in changes if (why := self._refusal(c))]
        self._settle(refused)
        gone = {id(c) for c, _ in refused}
        changes = [c for c in changes if id(c) not in gone]
        self._decide_conflicts([c for c in changes if c.operation == "update"])
        for change in changes:
            if change.operation == "update" and (survivor := _known_survivor(change)):
                self._redirect(change, *survivor)
        todo = changes
        for _ in range(MAX_REDIRECTS + 1):
            replaced = []
            for batch in self._send(todo):
                self._settle([(c, o) for c, o in batch if not _was_replaced(c, o)])
                replaced += [c for c, o in batch if _was_replaced(c, o)]
            if not replaced:
                return
            todo = self._survivors(replaced)
        self._settle([(c, _failure("ENTITY_IS_DELETED", "too many merges to follow")) for c in todo])

    def _refusal(self, change: Change) -> dict[str, Any] | None:
        """Why a change cannot be sent at all (kept as its error until the row changes again), if so."""
        if change.current is None and change.operation != "delete":
            return _failure(
                "ROW_NOT_FOUND",
                f"row {change.row_id} of {OBJECT_SCHEMA}.{self.entry.table} no longer exists (truncated?)",
            )
        if change.sfid is not None and not SALESFORCE_ID.fullmatch(change.sfid):
            return _failure("MALFORMED_ID", f"{change.sfid!r} in column id is not a Salesforce Id")
        return None

    # -- Conflicts -------------------------------------------------------------------------------------

    def _decide_conflicts(self, updates: list[Change]) -> None:
        """Drop from the push the fields both sides changed where Salesforce wins, and record each conflict.

        Salesforce is asked for its current values only where it may win. Where the warehouse wins anyway
        no call is spent to look: such a conflict is recorded when a pull has already shown Salesforce's
        value in the row.
        """
        names = self.names(self.entry.sobject)

        def winner(column: str) -> str:
            return self.entry.winner(names.get(column, column))

        contested = {c for u in updates for c in u.values if c in names and winner(c) == "salesforce"}
        latest = self._salesforce_values(updates, sorted(contested))
        decided = []
        for change in updates:
            for column in list(change.values):
                seen = _salesforce_seen(change, column, latest)
                if seen is _UNSEEN or any(
                    _same(seen, value, self.types.get(column))
                    for value in (change.base.get(column), *change.trail[column])
                ):
                    continue  # only the warehouse changed it (a crashed push may have sent one of its values)
                side = winner(column)
                decided.append(_conflict(change, column, seen, side, "changed on both sides"))
                if side == "salesforce":
                    del change.values[column]
        self._record_conflicts(decided)

    def _salesforce_values(self, updates: list[Change], columns: list[str]) -> dict[str, dict[str, Any]]:
        """Salesforce's values now, by Id, for the records it changed since the last pull: the only ones
        that can conflict (one call unless Salesforce itself changed many records meanwhile)."""
        columns = [c for c in columns if c not in NOT_SENT]
        if not updates or not columns:
            return {}
        watermark = state.object_state(self.conn, self.entry.sobject).watermark
        conditions = []
        if watermark:
            since = watermark - timedelta(seconds=self.settings.lookback_seconds)
            conditions.append(f"{self.entry.cursor_field} >= {soql.literal(since)}")
        if len(updates) <= COLLECTION_SIZE:
            conditions.append(_id_in([cast(str, c.sfid) for c in updates]))
        names = [self.names(self.entry.sobject)[c] for c in columns]
        query = f"SELECT Id, {', '.join(names)} FROM {self.entry.sobject}"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        latest = {}
        for page in self.sf.query_pages(query, self.entry.page_size):
            for record in page["records"]:
                latest[record["Id"]] = {k.lower(): v for k, v in record.items() if k != "attributes"}
        return latest

    def _record_conflicts(self, conflicts: list[dict[str, Any]]) -> None:
        if not conflicts:
            return
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sfsync.conflicts (sobject, row_id, change_id, sfid, field, base_value,"
                " warehouse_value, salesforce_value, winner, reason) VALUES (%(sobject)s, %(row_id)s,"
                " %(change_id)s, %(sfid)s, %(field)s, %(base)s, %(warehouse)s, %(salesforce)s, %(winner)s,"
                " %(reason)s) ON CONFLICT DO NOTHING",
                [c | {"sobject": self.entry.sobject} for c in conflicts],
            )
        for c in conflicts:
            log.info(
                "%s row %s: %s %s: %s wins", self.entry.sobject, c["row_id"], c["field"], c["reason"],
                c["winner"],
            )  # fmt: skip

    # -- Merges and conversions ------------------------------------------------------------------------

    def _survivors(self, replaced: list[Change]) -> list[Change]:
        """Ask Salesforce where the replaced records went; redirect the changes there."""
        found: dict[str, dict[str, Any]] = {}
        for sobject, group in groupby(sorted(replaced, key=lambda c: c.sobject), lambda c: c.sobject):
            fields = "Id, MasterRecordId" + (", IsConverted, ConvertedContactId" if sobject == "Lead" else "")
            for ids in _chunks(sorted({cast(str, c.sfid) for c in group}), COLLECTION_SIZE):
                query = f"SELECT {fields} FROM {sobject} WHERE {_id_in(ids)}"
                for page in self.sf.query_pages(query):
                    found |= {r["Id"]: r for r in page["records"]}
        redirected, lost = [], []
        for change in replaced:
            record = found.get(cast(str, change.sfid), {})
            master, contact = record.get("MasterRecordId"), record.get("ConvertedContactId")
            if survivor := _survivor(change.sobject, master, record.get("IsConverted"), contact):
                self._redirect(change, *survivor)
                redirected.append(change)
            else:
                lost.append(
                    (change, _failure("ENTITY_IS_DELETED", "deleted in Salesforce, with no survivor"))
                )
        self._settle(lost)
        return redirected

    def _redirect(self, change: Change, sobject: str, sfid: str) -> None:
        """Point a change at the surviving record, keeping only the fields that object has."""
        log.info(
            "%s row %s: %s replaced by %s %s", self.entry.sobject, change.row_id, change.sfid, sobject, sfid
        )
        fields = self.fields(sobject)
        dropped = [c for c in change.values if c not in NOT_SENT and not fields.get(c, {}).get("updateable")]
        if sobject != change.sobject and dropped:
            self._record_conflicts(
                [
                    _conflict(change, c, None, "salesforce", f"{sobject} {sfid} has no such field to write")
                    for c in dropped
                ]
            )
            change.values = {c: v for c, v in change.values.items() if c not in dropped}
        change.sobject, change.sfid, change.redirected = sobject, sfid, True

    # -- Sending ---------------------------------------------------------------------------------------

    def _send(self, changes: list[Change]) -> Iterator[list[tuple[Change, dict[str, Any]]]]:
        """Each call's changes with Salesforce's result for each."""
        sendable = [c for c in changes if (c.sfid if c.operation == "delete" else self._sendable(c))]
        if len(sendable) < len(changes):  # created and deleted before a push; every field kept Salesforce's
            kept = {id(c) for c in sendable}
            yield [(c, _UNCHANGED) for c in changes if id(c) not in kept]
        by_operation: dict[str, list[Change]] = {"update": [], "insert": [], "delete": []}
        for change in sendable:
            change.record = self._record(change)
            by_operation[change.operation].append(change)
        # Oldest change first: where two rows' changes reach one record (both redirected to a merge
        # survivor), the one made last in the warehouse is written last, and stays.
        updates = sorted(by_operation["update"], key=lambda c: (c.sobject, c.change_id))
        for sobject, group in groupby(updates, lambda c: c.sobject):
            yield from self._write(list(group), "update", "Id", sobject)
        if inserts := by_operation["insert"]:
            if external_id := self._warehouse_key():
                self._mark_sent(inserts)
                yield from self._write(inserts, "upsert", external_id, self.entry.sobject)
            else:  # without a key to match results by, creates go through Collections, which keep their order
                yield from self._collections(inserts, "POST", "composite/sobjects")
        yield from self._write(by_operation["delete"], "delete", "Id", self.entry.sobject)

    def _write(
        self, changes: list[Change], operation: str, key: str, sobject: str
    ) -> Iterator[list[tuple[Change, dict[str, Any]]]]:
        by_rest = changes
        if len(changes) > self.entry.bulk_threshold:
            # REST answers for each record: it takes those a Bulk job cannot carry, and those a failed job
            # left unprocessed (one bad record fails a whole job: sent again by Bulk, it would hold the good
            # ones back for ever), up to the Bulk threshold a run so that a large failed job costs a few
            # calls a run; the rest go by Bulk again meanwhile.
            retried = [c for c in changes if c.last_error == "NOT_PROCESSED"][: self.entry.bulk_threshold]
            uncarried = [c for c in changes if not ingest.carries(c.record)]
            by_rest = list({id(c): c for c in retried + uncarried}.values())
            rest = {id(c) for c in by_rest}
            yield from self._bulk([c for c in changes if id(c) not in rest], operation, key, sobject)
        if operation == "delete":
            for chunk in _chunks(by_rest, COLLECTION_SIZE):
                params = {"ids": ",".join(cast(str, c.sfid) for c in chunk), "allOrNone": "false"}
                yield from self._guarded(
                    chunk,
                    partial(self.sf.client.restful, "composite/sobjects", method="DELETE", params=params),
                )
        else:
            path = f"composite/sobjects/{sobject}/{key}" if operation == "upsert" else "composite/sobjects"
            yield from self._collections(by_rest, "PATCH", path)

    def _bulk(
        self, changes: list[Change], operation: str, key: str, sobject: str
    ) -> Iterator[list[tuple[Change, dict[str, Any]]]]:
        if not changes:
            return
        # One job holds each record once: two changes bound for one record (two rows redirected to one
        # merge survivor) go one after the other.
        first: dict[str, Change] = {}
        later = [c for c in changes if first.setdefault(str(c.record[key]), c) is not c]
        chunk = list(first.values())
        types = {self.names(sobject).get(column, column): kind for column, kind in self.types.items()}

        def bulk() -> list[dict[str, Any]]:
            records = [{k: v for k, v in c.record.items() if k != "attributes"} for c in chunk]
            outcomes = ingest.run(self.sf, sobject, operation, records, key, types)
            return [outcomes[str(c.record[key])] for c in chunk]

        yield from self._guarded(chunk, bulk)
        if later:
            yield from self._write(later, operation, key, sobject)

    def _collections(
        self, changes: list[Change], method: str, path: str
    ) -> Iterator[list[tuple[Change, dict[str, Any]]]]:
        for chunk in _chunks(changes, COLLECTION_SIZE):
            body = {"allOrNone": False, "records": [c.record for c in chunk]}
            yield from self._guarded(chunk, partial(self.sf.client.restful, path, method=method, json=body))

    def _mark_sent(self, inserts: list[Change]) -> None:
        """Mark these inserts sent, before they are: should the answer be lost, the pull that brings their
        records gives them to these rows by their key (``warehouse_key.adopt``), and to no other row."""
        self.conn.execute(
            "UPDATE sfsync.outbox o SET sent_at = now()"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS d(row_id, change_id)"
            " WHERE o.sobject = %s AND o.row_id = d.row_id AND o.change_id <= d.change_id"
            " AND o.pushed_at IS NULL",
            [[c.row_id for c in inserts], [c.change_id for c in inserts], self.entry.sobject],
        )

    def _sendable(self, change: Change) -> bool:
        return change.operation == "insert" or any(
            c not in NOT_SENT and c != self.key_column for c in change.values
        )

    def _guarded(
        self, chunk: list[Change], call: Callable[[], Any]
    ) -> Iterator[list[tuple[Change, dict[str, Any]]]]:
        """One call's outcome per record. A call refused as a whole fails each of its records, so the
        other calls go on: transiently for a timeout or a server error, with Salesforce's own code for a
        malformed request."""
        try:
            results = call()
        except (
            requests.RequestException,
            TimeoutError,
            SalesforceGeneralError,
            SalesforceMalformedRequest,
        ) as e:
            content = getattr(e, "content", None)
            error = (
                content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
            )
            code = error.get("errorCode") if isinstance(e, SalesforceMalformedRequest) else "REQUEST_FAILED"
            message = error.get("message") or type(e).__name__
            log.warning(
                "%s: a call for %d records failed: %s: %s", self.entry.sobject, len(chunk), code, message
            )
            results = [_failure(code or "REQUEST_FAILED", message)] * len(chunk)
        yield list(zip(chunk, cast(list[dict[str, Any]], results), strict=True))

    def _record(self, change: Change) -> dict[str, Any]:
        """The Salesforce record carrying a change's columns, by their API names."""
        names = self.names(change.sobject)
        record: dict[str, Any] = {"attributes": {"type": change.sobject}}
        if change.operation == "delete":
            return record | {"Id": change.sfid}
        if change.operation == "update":
            record["Id"] = change.sfid
        for column, value in change.values.items():
            if column not in NOT_SENT and column != self.key_column:
                record[names.get(column, column)] = value
        if change.operation == "insert":
            if external_id := self._warehouse_key():
                # Always the row's own key: a row copied with another row's key must not claim its record.
                record[external_id] = self._row_key(change.row_id)
            if change.sobject == "Lead":
                # Salesforce requires both; Marketo fills its configured defaults on the first push only.
                record["LastName"] = record.get("LastName") or self.settings.lead_default_last_name
                record["Company"] = record.get("Company") or self.settings.lead_default_company
        return record

    def _warehouse_key(self) -> str | None:
        """The org's external Id field for warehouse rows, when the integration user can write it."""
        found = self.fields(self.entry.sobject).get(self.key_column)
        return found["name"] if found and found.get("externalId") and found.get("createable") else None

    def _row_key(self, row_id: int) -> str:
        if not hasattr(self, "_installation"):
            self._installation = warehouse_key.installation(self.conn)
        return warehouse_key.row_key(self._installation, self.entry.table, row_id)

    # -- Settling --------------------------------------------------------------------------------------

    def _settle(self, outcomes: list[tuple[Change, dict[str, Any]]]) -> None:
        """Record one call's results in one transaction: pushed changes, new Ids, and failures."""
        if not outcomes:
            return
        # A delete of a record Salesforce already deleted (a retry, a delete on both sides) has its way.
        outcomes = [
            (c, _UNCHANGED) if c.operation == "delete" and _codes(o) == {"ENTITY_IS_DELETED"} else (c, o)
            for c, o in outcomes
        ]
        with self.conn.transaction(), self.conn.cursor() as cursor:
            created = [
                (c.row_id, o["id"]) for c, o in outcomes if o.get("success") and c.operation == "insert"
            ]
            held = set(warehouse_key.claim(self.conn, self.entry.sobject, self.entry.table, created))
            outcomes = [
                (c, _failure("DUPLICATE_VALUE", f"record {o['id']} is in another row, whose edits wait"))
                if c.operation == "insert" and c.row_id in held
                else (c, o)
                for c, o in outcomes
            ]
            done = [(c, o) for c, o in outcomes if o.get("success")]
            failed = [(c, o) for c, o in outcomes if not o.get("success")]
            cursor.execute(
                "UPDATE sfsync.outbox o SET pushed_at = now(), pushed_to = d.pushed_to"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS d(row_id, change_id, pushed_to)"
                " WHERE o.sobject = %s AND o.row_id = d.row_id AND o.change_id <= d.change_id"
                " AND o.pushed_at IS NULL",
                [
                    [c.row_id for c, _ in done],
                    [c.change_id for c, _ in done],
                    [c.sfid if c.redirected else None for c, _ in done],
                    self.entry.sobject,
                ],
            )
            cursor.execute(
                "DELETE FROM sfsync.sync_errors WHERE sobject = %s AND row_id = ANY(%s)",
                [self.entry.sobject, [c.row_id for c, _ in done]],
            )
            cursor.executemany(
                warehouse.statement("writeback/record_push_error"), [self._error(c, o) for c, o in failed]
            )
            counted = Counter(
                "skipped"
                if o.get("unchanged")
                else {"insert": "new", "update": "updated", "delete": "deleted"}[c.operation]
                for c, o in done
            )
            state.count_push(self.conn, self.run_key, dict(counted), len(failed))
        for change, outcome in failed:
            error = outcome["errors"][0]
            self.codes[error["statusCode"]] += 1
            log.warning(
                "%s row %s (%s %s): %s: %s", self.entry.sobject, change.row_id, change.operation,
                change.sfid or "new", error["statusCode"], error["message"],
            )  # fmt: skip

    def _error(self, change: Change, outcome: dict[str, Any]) -> dict[str, Any]:
        error = (outcome.get("errors") or [{}])[0]
        code = error.get("statusCode") or "UNKNOWN"
        return {
            "sobject": self.entry.sobject,
            "row_id": change.row_id,
            "change_id": change.change_id,
            "sfid": change.sfid,
            "operation": change.operation,
            "status_code": code,
            "message": error.get("message") or str(outcome),
            "fields": error.get("fields") or [],
            "transient": code in TRANSIENT_CODES,
            "retry_after": self.settings.retry_after_seconds,
            "retry_cap": self.settings.retry_cap_seconds,
        }


_UNSEEN = object()
#: The outcome of a change with nothing left to send, or already done in Salesforce.
_UNCHANGED: dict[str, Any] = {"success": True, "unchanged": True}


def _salesforce_seen(change: Change, column: str, latest: dict[str, dict[str, Any]]) -> Any:
    """Salesforce's value of a column as far as the push can tell without asking: what it returned just
    now, else what a pull wrote over the warehouse's edit since, else nothing new (``_UNSEEN``)."""
    record = latest.get(cast(str, change.sfid))
    if record is not None and column in record:
        return record[column]
    if change.current is not None and change.current.get(column) != change.values[column]:
        return change.current.get(column)
    return _UNSEEN


def _same(salesforce: Any, warehouse_value: Any, pg_type: str | None) -> bool:
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


def _conflict(change: Change, column: str, seen: Any, winner: str, reason: str) -> dict[str, Any]:
    return {
        "row_id": change.row_id,
        "change_id": change.change_id,
        "sfid": change.sfid,
        "field": column,
        "base": Jsonb(change.base.get(column)),
        "warehouse": Jsonb(change.values.get(column)),
        "salesforce": Jsonb(None if seen is _UNSEEN else seen),
        "winner": winner,
        "reason": reason,
    }


def _known_survivor(change: Change) -> tuple[str, str] | None:
    """The survivor the warehouse already knows of: a pull brought the merge or the conversion."""
    row = change.current or {}
    if not row.get("isdeleted") and not row.get("isconverted"):
        return None
    return _survivor(
        change.sobject, row.get("masterrecordid"), row.get("isconverted"), row.get("convertedcontactid")
    )


def _survivor(
    sobject: str, master: str | None, converted: bool | None, contact: str | None
) -> tuple[str, str] | None:
    if master and SALESFORCE_ID.fullmatch(master):
        return sobject, master
    if converted and contact and SALESFORCE_ID.fullmatch(contact):
        return "Contact", contact
    return None


def _id_in(ids: list[str]) -> str:
    """A SOQL ``Id IN (...)`` of Ids already checked against SALESFORCE_ID."""
    return "Id IN ({})".format(", ".join(f"'{i}'" for i in ids))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _codes(outcome: dict[str, Any]) -> set[str]:
    return {e.get("statusCode") for e in outcome.get("errors") or []} if not outcome.get("success") else set()


def _was_replaced(change: Change, outcome: dict[str, Any]) -> bool:
    return change.operation == "update" and bool(_codes(outcome) & REPLACED_CODES)


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}
