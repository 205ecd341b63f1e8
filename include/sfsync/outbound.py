"""Warehouse to Salesforce: push the changes captured in ``sfsync.outbox`` for one bidirectional object.

Runs before the object's pull, in the same DAG run. Each changed row is sent once with the current values
of the columns that changed (sObject Collections, 200 records a call): updates by Id, inserts as creates
whose new Id is written back to the row, deletes only where the registry allows them (the capture trigger
refuses the others). Every record's result is checked: a success marks its outbox entries pushed, a
failure lands in ``sfsync.sync_errors`` with Salesforce's status code and message and is retried - every
run for transient codes, after the row changes again for the others. Nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import psycopg
from psycopg import sql

from sfsync import warehouse
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.registry import SyncObject, SyncSettings
from sfsync.salesforce import Salesforce

log = logging.getLogger(__name__)

OUTBOUND = "outbound"
COLLECTION_SIZE = 200
#: Failures worth retrying as they are: the record itself is fine.
TRANSIENT_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "API_TEMPORARILY_UNAVAILABLE", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
)


def push(
    entry: SyncObject, settings: SyncSettings, run_id: str, sf_conn_id: str, wh_conn_id: str
) -> dict[str, Any]:
    """Send this object's pending warehouse changes to Salesforce; return the run's counters."""
    key = {"run_id": run_id, "sobject": entry.sobject, "direction": OUTBOUND}
    counters = {"new": 0, "updated": 0, "deleted": 0, "failed": 0}
    with warehouse.connect(wh_conn_id) as conn:
        pending = conn.execute(
            warehouse.statement("state/pending_changes"), {"sobject": entry.sobject}
        ).fetchall()
        if not pending:
            return {"status": "nothing to push", **counters, "api_calls": 0}
        conn.execute(
            warehouse.statement("state/start_run"),
            key | {"status": "pushing", "window_start": None, "window_end": None},
        )
        sf = Salesforce(sf_conn_id)
        fields = {f["name"].lower(): f for f in sf.describe(entry.sobject)["fields"]}
        rows = _current_ids(conn, entry.table, [p[0] for p in pending])
        deletes, writes = [], []
        for row_id, change_id, last_operation, inserted, sfid, changes in pending:
            change = {"row_id": row_id, "change_id": change_id, "sfid": sfid}
            if last_operation == "delete":
                deletes.append(change | {"operation": "delete"})
                continue
            sfid = rows.get(row_id)  # the Id may have been written back since the change was captured
            operation = "insert" if inserted and not sfid else "update"
            change |= {"operation": operation, "sfid": sfid}
            writes.append((change, _record(entry, settings, fields, sfid, changes, operation)))
        for change, outcome in _send(sf, writes, deletes):
            _settle(conn, entry, change, outcome, counters)
        conn.execute(
            warehouse.statement("state/finish_run"),
            key | counters | {"status": "pushed", "skipped": 0, "api_calls": sf.meter.calls, "message": None},
        )
    log.info(
        "%s: pushed %d new, %d updated, %d deleted, %d failed with %d API calls",
        entry.sobject, counters["new"], counters["updated"], counters["deleted"], counters["failed"],
        sf.meter.calls,
    )  # fmt: skip
    return {"status": "pushed", **counters, "api_calls": sf.meter.calls}


def _current_ids(conn: psycopg.Connection, table: str, row_ids: list[int]) -> dict[int, str | None]:
    found = conn.execute(
        sql.SQL("SELECT {row}, id FROM {table} WHERE {row} = ANY(%s)").format(
            row=sql.Identifier(warehouse.ROW_ID), table=sql.Identifier(OBJECT_SCHEMA, table)
        ),
        [row_ids],
    ).fetchall()
    return dict(found)  # type: ignore[arg-type]


def _record(
    entry: SyncObject,
    settings: SyncSettings,
    fields: dict[str, dict[str, Any]],
    sfid: str | None,
    changes: dict[str, Any],
    operation: str,
) -> dict[str, Any]:
    """The Salesforce record carrying a row's changed columns, by their API names."""
    record: dict[str, Any] = {"attributes": {"type": entry.sobject}}
    if operation == "update":
        record["Id"] = sfid
    for name, value in changes.items():
        if name not in ("id", "isdeleted"):
            record[fields[name]["name"] if name in fields else name] = value
    if operation == "insert" and entry.sobject == "Lead":
        # Salesforce requires both; Marketo fills its configured defaults on the first push only.
        record["LastName"] = record.get("LastName") or settings.lead_default_last_name
        record["Company"] = record.get("Company") or settings.lead_default_company
    return record


def _send(
    sf: Salesforce,
    writes: list[tuple[dict[str, Any], dict[str, Any]]],
    deletes: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each change with Salesforce's result for it, 200 records a call, in request order."""
    calls: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    for method, operation in (("PATCH", "update"), ("POST", "insert")):
        batch = [(change, record) for change, record in writes if change["operation"] == operation]
        for start in range(0, len(batch), COLLECTION_SIZE):
            chunk = batch[start : start + COLLECTION_SIZE]
            body = {"json": {"allOrNone": False, "records": [record for _, record in chunk]}}
            calls.append((method, [change for change, _ in chunk], body))
    for start in range(0, len(deletes), COLLECTION_SIZE):
        changes = deletes[start : start + COLLECTION_SIZE]
        ids = ",".join(change["sfid"] for change in changes)
        calls.append(("DELETE", changes, {"params": {"ids": ids, "allOrNone": "false"}}))
    for method, changes, body in calls:
        results = cast(list[dict[str, Any]], sf.client.restful("composite/sobjects", method=method, **body))
        yield from zip(changes, results, strict=True)


def _settle(
    conn: psycopg.Connection,
    entry: SyncObject,
    change: dict[str, Any],
    outcome: dict[str, Any],
    counters: dict[str, int],
) -> None:
    """Mark a change pushed (writing a new Id back), or record why Salesforce refused it."""
    with conn.transaction():
        if outcome.get("success"):
            if change["operation"] == "insert":
                # The sync's own write: not captured, so the new Id does not echo back as a change.
                conn.execute("SELECT set_config('sfsync.origin', 'salesforce', true)")
                conn.execute(
                    sql.SQL("UPDATE {} SET id = %s WHERE {} = %s").format(
                        sql.Identifier(OBJECT_SCHEMA, entry.table), sql.Identifier(warehouse.ROW_ID)
                    ),
                    [outcome["id"], change["row_id"]],
                )
            conn.execute(
                "UPDATE sfsync.outbox SET pushed_at = now()"
                " WHERE sobject = %s AND row_id = %s AND change_id <= %s AND pushed_at IS NULL",
                [entry.sobject, change["row_id"], change["change_id"]],
            )
            conn.execute(
                "DELETE FROM sfsync.sync_errors WHERE sobject = %s AND row_id = %s",
                [entry.sobject, change["row_id"]],
            )
            counters[{"insert": "new", "update": "updated", "delete": "deleted"}[change["operation"]]] += 1
            return
        error = (outcome.get("errors") or [{"statusCode": "UNKNOWN", "message": str(outcome)}])[0]
        conn.execute(
            warehouse.statement("state/record_push_error"),
            change
            | {
                "sobject": entry.sobject,
                "status_code": error.get("statusCode", "UNKNOWN"),
                "message": error.get("message", ""),
                "fields": error.get("fields") or [],
                "transient": error.get("statusCode") in TRANSIENT_CODES,
            },
        )
        counters["failed"] += 1
        log.warning(
            "%s row %s (%s): %s: %s", entry.sobject, change["row_id"], change["operation"],
            error.get("statusCode"), error.get("message"),
        )  # fmt: skip
