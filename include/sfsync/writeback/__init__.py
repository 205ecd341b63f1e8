"""Warehouse to Salesforce: push the changes captured in ``sfsync.outbox`` for one bidirectional object.

Runs before the object's pull, in the same DAG run:

1. Each due row's pending changes are folded into one: the warehouse's latest value of every changed
   column, and the value it replaced (what the sync had last written there). (``pending``)
2. Conflicts are decided per field. A field Salesforce also changed since then keeps the registry's
   winner (``SyncObject.winner``: the warehouse for Lead, Salesforce for Contact by default); fields changed
   on one side only always survive. Decisions are kept in ``sfsync.conflicts``. (``conflicts``)
3. Updates and deletes go through sObject Collections (200 a call) or, above the registry's
   ``bulk_threshold``, one Bulk API 2.0 ingest job. Inserts are upserts on the warehouse key
   (``warehouse_id_field``) where the org has it, so a retried push never creates a twin; their new Ids
   are written back to the rows. A Lead's first push fills the default LastName and Company. (``send``,
   ``bulk``)
4. A change to a record that a merge or a conversion replaced is written to the survivor (MasterRecordId,
   ConvertedContactId), whether the warehouse already knew or Salesforce says so now. (``survivors``)
5. Every record's result is settled: a success marks its outbox entries pushed; a failure lands in
   ``sfsync.sync_errors`` with Salesforce's code and message and is retried: after a doubling backoff for
   transient codes, after the row changes again for the others. Nothing is dropped. (``settle``)
"""

from __future__ import annotations

import logging
from typing import Any

from sfsync import locks, state
from sfsync.context import Context
from sfsync.registry import SyncObject
from sfsync.writeback import conflicts, pending, send, survivors
from sfsync.writeback.fields import Fields
from sfsync.writeback.settle import Settler, failure

log = logging.getLogger(__name__)

OUTBOUND = "outbound"


def push(context: Context, entry: SyncObject) -> dict[str, Any]:
    """Send this object's pending warehouse changes to Salesforce; return the run's counters."""
    conn = context.conn
    key = state.RunKey(context.run_id, entry.sobject, OUTBOUND)
    with locks.holding(conn, entry.sobject, OUTBOUND):
        changes = pending.read(conn, entry)
        if not changes:
            return {"status": "nothing to push", "new": 0, "updated": 0, "deleted": 0, "failed": 0}
        for stale in state.abandon_stale_runs(conn, key):
            log.warning("%s: push %s never finished: marked abandoned", entry.sobject, stale)
        state.start_run(conn, key, "pushing")
        settle = Settler(conn, entry, context.settings, key)
        try:
            _push(context, entry, changes, settle)
        except Exception as error:  # kept with the run, and the task fails; the pull runs all the same
            why = f"{type(error).__name__}: {error}"[:2000]
            state.finish_push(conn, key, "failed", context.calls, why)
            raise
        counters = state.finish_push(conn, key, "pushed", context.calls, settle.summary())
    log.info(
        "%s: pushed %d new, %d updated, %d deleted, %d unchanged, %d failed with %d API calls%s",
        entry.sobject, counters["new"], counters["updated"], counters["deleted"], counters["skipped"],
        counters["failed"], context.calls, f" ({settle.summary()})" if counters["failed"] else "",
    )  # fmt: skip
    return {"status": "pushed", **counters, "api_calls": context.calls}


def _push(context: Context, entry: SyncObject, changes: list[pending.Change], settle: Settler) -> None:
    """Decide, send and settle every change, following replaced records to their survivors."""
    refused = [(c, why) for c in changes if (why := send.refusal(c, entry.table))]
    settle(refused)
    gone = {id(c) for c, _ in refused}
    changes = [c for c in changes if id(c) not in gone]
    fields = Fields(context, entry)
    conflicts.decide(context, entry, fields, [c for c in changes if c.operation == "update"])
    for change in changes:
        if change.operation == "update" and (survivor := survivors.known(change)):
            survivors.follow(context, entry, fields, change, survivor)
    sender = send.Sender(context, entry, fields)
    for _ in range(survivors.MAX_REDIRECTS + 1):
        replaced = []
        for batch in sender.send(changes):
            settle([(c, o) for c, o in batch if not survivors.was_replaced(c, o)])
            replaced += [c for c, o in batch if survivors.was_replaced(c, o)]
        if not replaced:
            return
        changes, lost = survivors.find(context, entry, fields, replaced)
        settle(lost)
    settle([(c, failure("ENTITY_IS_DELETED", "too many merges to follow")) for c in changes])
