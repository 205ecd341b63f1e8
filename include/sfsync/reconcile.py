"""Salesforce to warehouse, periodically: compare every Id with Salesforce, both ways, and repair what no
delta would ever bring.

Rows whose Id Salesforce no longer returns, even through queryAll (hard deletes, recycle-bin purges,
records turned invisible), are flagged as deleted; records the table lacks, or holds as deleted while
Salesforce shows them live (turned visible, say by a sharing rule, without changing), are read and merged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

from sfsync import budget, load, locks, state
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.extract import INBOUND, abandon_stale_runs, read_again, source, stage, waiting_for_full_load
from sfsync.soql import id_query
from sfsync.warehouse import DELETED_AT, SYNCED_AT, as_the_sync

if TYPE_CHECKING:
    from sfsync.context import Context
    from sfsync.registry import SyncObject, SyncSettings

log = logging.getLogger(__name__)

RECONCILE = "reconcile"


def reconcile(context: Context, entry: SyncObject, force: bool = False) -> dict[str, Any]:
    """Reconcile the object when due (every ``reconcile_every_hours``, or now when ``force``d); return
    what it found."""
    # Checked before taking the lock too (see ``extract``), and again once it is held.
    if (skipped := _not_reconciling(context.conn, entry, context.settings, force)) is not None:
        return skipped
    with locks.holding(context.conn, entry.sobject, INBOUND):
        return _reconcile(context, entry, force)


def _not_reconciling(
    conn: psycopg.Connection, entry: SyncObject, settings: SyncSettings, force: bool
) -> dict[str, Any] | None:
    """Why the reconciliation does not run now, if it does not."""
    now = state.object_state(conn, entry.sobject)
    if now.fields is None:  # a full load's hand-over, before the first incremental run
        return {"status": "not yet synced"}
    every = timedelta(hours=settings.reconcile_every_hours)
    last = now.last_reconciled_at
    if not force and last and now.now - last < every:
        return {"status": "not due", "next": (last + every).isoformat()}
    # A slice committed after the Ids were listed would hold records the list lacks, flagged as deleted.
    return waiting_for_full_load(conn, entry)


def _reconcile(context: Context, entry: SyncObject, force: bool) -> dict[str, Any]:
    """``reconcile``, once the object's inbound lock is held (so what was checked before it is again)."""
    conn, settings = context.conn, context.settings
    if (skipped := _not_reconciling(conn, entry, settings, force)) is not None:
        return skipped
    if reason := budget.holds_back(context, entry.sobject):
        log.warning("%s: skipping reconciliation: %s", entry.sobject, reason)
        return {"status": "skipped", "reason": reason}
    fields = cast(list[str], state.object_state(conn, entry.sobject).fields)
    key = state.RunKey(context.run_id, entry.sobject, RECONCILE)
    abandon_stale_runs(conn, entry, key)
    state.start_run(conn, key, "reconciling")
    staging = load.staging_table(entry.table, f"{context.run_id}/ids")
    found_staging = load.staging_table(entry.table, f"{context.run_id}/found")
    ids, target = sql.Identifier("sfsync", staging), sql.Identifier(OBJECT_SCHEMA, entry.table)
    listed = ["Id", "IsDeleted"] if "IsDeleted" in fields else ["Id"]  # User has no IsDeleted
    names = [f.lower() for f in fields]
    with conn.transaction():
        seen = _list_ids(context, entry, staging, listed)
        missed = _missed(conn, ids, target)
        load.create_staging(conn, entry.table, found_staging, names)
        stage(conn, found_staging, names, read_again(context.sf, entry, fields, missed))
        # The listing took a while: a full load that began since may have committed records it lacks.
        if waiting := waiting_for_full_load(conn, entry):
            load.drop_staging(conn, staging)
            load.drop_staging(conn, found_staging)
            state.finish_run(conn, key, "waiting", {}, context.calls, waiting["status"])
            return waiting
        # Row locks from here on only: nothing below waits for Salesforce.
        as_the_sync(conn)
        flagged = _flag_gone(conn, ids, target)
        restored = load.merge_into(conn, entry, settings.warehouse_key_column, found_staging, names)
        state.mark_reconciled(conn, entry.sobject)
        counters = restored | {"deleted": flagged}
        state.finish_run(conn, key, "reconciled", counters, context.calls, f"{seen} Ids in Salesforce")
        load.drop_staging(conn, staging)
        load.drop_staging(conn, found_staging)
    context.record_usage()
    found = restored["new"] + restored["updated"]
    log.info(
        "%s: reconciled %d Ids, flagged %d rows gone from Salesforce, read %d records no delta brought",
        entry.sobject, seen, flagged, found,
    )  # fmt: skip
    return {
        "status": "reconciled",
        "ids": seen,
        "flagged": flagged,
        "found": found,
        "api_calls": context.calls,
    }


def _list_ids(context: Context, entry: SyncObject, staging: str, listed: list[str]) -> int:
    """Stage every Id Salesforce returns (with IsDeleted where the object has it), indexed; how many."""
    ids = sql.Identifier("sfsync", staging)
    load.drop_staging(context.conn, staging)  # an earlier attempt's
    listing = "CREATE UNLOGGED TABLE {} (id text, isdeleted boolean NOT NULL DEFAULT false)"
    context.conn.execute(sql.SQL(listing).format(ids))
    found = source(context.sf, entry, id_query(entry.sobject, listed))
    seen = stage(context.conn, staging, [f.lower() for f in listed], found)
    context.conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(ids))
    return seen


def _missed(conn: psycopg.Connection, ids: sql.Identifier, target: sql.Identifier) -> list[str]:
    """The listed Ids that the table lacks, or holds as deleted while Salesforce lists them live."""
    return [
        row[0]
        for row in conn.execute(
            sql.SQL(
                "SELECT s.id FROM {ids} s LEFT JOIN {target} t ON t.id = s.id"
                " WHERE t.id IS NULL OR (t.isdeleted AND NOT s.isdeleted) ORDER BY s.id"
            ).format(ids=ids, target=target)
        )
    ]


def _flag_gone(conn: psycopg.Connection, ids: sql.Identifier, target: sql.Identifier) -> int:
    """Flag as deleted the live rows whose Id Salesforce no longer lists; how many."""
    return conn.execute(
        sql.SQL(
            "UPDATE {target} t SET isdeleted = true, {deleted_at} = coalesce(t.{deleted_at}, now()),"
            " {synced_at} = now()"
            " WHERE t.id IS NOT NULL AND NOT t.isdeleted"
            " AND NOT EXISTS (SELECT 1 FROM {ids} s WHERE s.id = t.id)"
        ).format(
            target=target, deleted_at=sql.Identifier(DELETED_AT), synced_at=sql.Identifier(SYNCED_AT), ids=ids
        )
    ).rowcount
