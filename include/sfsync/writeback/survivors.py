"""Merges and conversions: a change to a record that a merge or a conversion replaced is written to the
survivor (MasterRecordId, a converted lead's ConvertedContactId), whether the warehouse already knew or
Salesforce says so when the change is sent."""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Any, cast

from sfsync import soql
from sfsync.context import Context
from sfsync.registry import SyncObject
from sfsync.writeback import conflicts
from sfsync.writeback.fields import NOT_SENT, Fields
from sfsync.writeback.pending import Change
from sfsync.writeback.send import COLLECTION_SIZE, SALESFORCE_ID, Batch, chunks
from sfsync.writeback.settle import Outcome, codes, failure

log = logging.getLogger(__name__)

#: Salesforce's answers for a record that a merge or a conversion replaced while a change waited.
REPLACED_CODES = frozenset({"ENTITY_IS_DELETED", "CANNOT_UPDATE_CONVERTED_LEAD"})
#: A survivor can itself be merged away before the change lands: follow at most this many hops.
MAX_REDIRECTS = 3


def known(change: Change) -> tuple[str, str] | None:
    """The survivor the warehouse already knows of: a pull brought the merge or the conversion."""
    row = change.current or {}
    if not row.get("isdeleted") and not row.get("isconverted"):
        return None
    return of(
        change.sobject, row.get("masterrecordid"), row.get("isconverted"), row.get("convertedcontactid")
    )


def of(
    sobject: str, master: str | None, converted: bool | None, contact: str | None
) -> tuple[str, str] | None:
    """The object and Id of the record that replaced one of ``sobject``, if any."""
    if master and SALESFORCE_ID.fullmatch(master):
        return sobject, master
    if converted and contact and SALESFORCE_ID.fullmatch(contact):
        return "Contact", contact
    return None


def was_replaced(change: Change, outcome: Outcome) -> bool:
    return change.operation == "update" and bool(codes(outcome) & REPLACED_CODES)


def redirect(
    change: Change, sobject: str, sfid: str, described: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Point a change at the surviving record of ``sobject`` (whose fields are ``described``), keeping only
    the fields that object lets the push write; the conflicts that drops."""
    dropped = [c for c in change.values if c not in NOT_SENT and not described.get(c, {}).get("updateable")]
    decided = []
    if sobject != change.sobject and dropped:
        reason = f"{sobject} {sfid} has no such field to write"
        decided = [conflicts.row(change, c, None, "salesforce", reason) for c in dropped]
        change.values = {c: v for c, v in change.values.items() if c not in dropped}
    change.sobject, change.sfid, change.redirected = sobject, sfid, True
    return decided


def follow(
    context: Context, entry: SyncObject, fields: Fields, change: Change, survivor: tuple[str, str]
) -> None:
    """Redirect a change to ``survivor`` and record what that drops."""
    sobject, sfid = survivor
    log.info("%s row %s: %s replaced by %s %s", entry.sobject, change.row_id, change.sfid, sobject, sfid)
    conflicts.record(context.conn, entry.sobject, redirect(change, sobject, sfid, fields.described(sobject)))


def find(
    context: Context, entry: SyncObject, fields: Fields, replaced: list[Change]
) -> tuple[list[Change], Batch]:
    """Ask Salesforce where the replaced records went and redirect their changes there; the changes
    redirected, and the failures of those whose record left no survivor."""
    found: dict[str, dict[str, Any]] = {}
    for sobject, group in groupby(sorted(replaced, key=lambda c: c.sobject), lambda c: c.sobject):
        asked = ["Id", "MasterRecordId"] + (
            ["IsConverted", "ConvertedContactId"] if sobject == "Lead" else []
        )
        for ids in chunks(sorted({cast(str, c.sfid) for c in group}), COLLECTION_SIZE):
            for page in context.sf.query_pages(soql.by_id_query(sobject, asked, ids)):
                found |= {r["Id"]: r for r in page["records"]}
    redirected, lost = [], []
    for change in replaced:
        record = found.get(cast(str, change.sfid), {})
        master, contact = record.get("MasterRecordId"), record.get("ConvertedContactId")
        if survivor := of(change.sobject, master, record.get("IsConverted"), contact):
            follow(context, entry, fields, change, survivor)
            redirected.append(change)
        else:
            lost.append((change, failure("ENTITY_IS_DELETED", "deleted in Salesforce, with no survivor")))
    return redirected, lost
