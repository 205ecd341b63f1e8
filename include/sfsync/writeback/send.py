"""Sending: each change as the Salesforce record it writes, through sObject Collections (200 records a
call) or, above the object's ``bulk_threshold``, a Bulk API 2.0 job; one outcome per record. Inserts are
upserts on the warehouse key where the org has it, so a retried push never creates a twin."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from itertools import groupby
from typing import Any, cast

import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sfsync.context import Context
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.registry import SyncObject
from sfsync.writeback import bulk
from sfsync.writeback.fields import NOT_SENT, Fields
from sfsync.writeback.pending import Change
from sfsync.writeback.settle import UNCHANGED, Outcome, failure

log = logging.getLogger(__name__)

COLLECTION_SIZE = 200
#: A Salesforce Id, 15 or 18 characters: anything else in an ``id`` column is refused before it reaches SOQL.
SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
#: A call refused as a whole: its records fail (``call_failure``), and the push's other calls go on.
CALL_FAILURES = (requests.RequestException, TimeoutError, SalesforceGeneralError, SalesforceMalformedRequest)

Batch = list[tuple[Change, Outcome]]


def refusal(change: Change, table: str) -> Outcome | None:
    """Why a change cannot be sent at all (kept as its error until the row changes again), if so."""
    if change.current is None and change.operation != "delete":
        return failure(
            "ROW_NOT_FOUND", f"row {change.row_id} of {OBJECT_SCHEMA}.{table} no longer exists (truncated?)"
        )
    if change.sfid is not None and not SALESFORCE_ID.fullmatch(change.sfid):
        return failure("MALFORMED_ID", f"{change.sfid!r} in column id is not a Salesforce Id")
    return None


def sendable(change: Change, key_column: str) -> bool:
    """Whether a change still has something to write (conflicts may have dropped every field)."""
    if change.operation == "delete":
        return bool(change.sfid)
    return change.operation == "insert" or any(c not in NOT_SENT and c != key_column for c in change.values)


def call_failure(error: Exception) -> Outcome:
    """The outcome of each record of a call refused as a whole: transient for a timeout or a server error,
    with Salesforce's own code for a malformed request."""
    content = getattr(error, "content", None)
    said = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
    code = said.get("errorCode") if isinstance(error, SalesforceMalformedRequest) else None
    return failure(code or "REQUEST_FAILED", said.get("message") or type(error).__name__)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Sender:
    """Sends one push's changes of ``entry`` (and of the survivors they are redirected to)."""

    def __init__(self, context: Context, entry: SyncObject, fields: Fields) -> None:
        self.context, self.entry, self.fields = context, entry, fields

    def send(self, changes: list[Change]) -> Iterator[Batch]:
        """Each call's changes with Salesforce's outcome for each."""
        todo = [c for c in changes if sendable(c, self.fields.key_column)]
        if len(todo) < len(changes):  # created and deleted before a push; every field kept Salesforce's
            kept = {id(c) for c in todo}
            yield [(c, UNCHANGED) for c in changes if id(c) not in kept]
        by_operation: dict[str, list[Change]] = {"update": [], "insert": [], "delete": []}
        for change in todo:
            change.record = self._record(change)
            by_operation[change.operation].append(change)
        # Oldest change first: where two rows' changes reach one record (both redirected to a merge
        # survivor), the one made last in the warehouse is written last, and stays.
        updates = sorted(by_operation["update"], key=lambda c: (c.sobject, c.change_id))
        for sobject, group in groupby(updates, lambda c: c.sobject):
            yield from self._write(list(group), "update", "Id", sobject)
        if inserts := by_operation["insert"]:
            if external_id := self.fields.warehouse_key():
                self._mark_sent(inserts)
                yield from self._write(inserts, "upsert", external_id, self.entry.sobject)
            else:  # without a key to match results by, creates go through Collections, which keep their order
                yield from self._collections(inserts, "POST", "composite/sobjects")
        yield from self._write(by_operation["delete"], "delete", "Id", self.entry.sobject)

    def _write(self, changes: list[Change], operation: str, key: str, sobject: str) -> Iterator[Batch]:
        by_rest = changes
        if len(changes) > self.entry.bulk_threshold:
            # REST answers for each record: it takes those a Bulk job cannot carry, and those a failed job
            # left unprocessed (one bad record fails a whole job: sent again by Bulk, it would hold the good
            # ones back for ever), up to the Bulk threshold a run so that a large failed job costs a few
            # calls a run; the rest go by Bulk again meanwhile.
            retried = [c for c in changes if c.last_error == "NOT_PROCESSED"][: self.entry.bulk_threshold]
            uncarried = [c for c in changes if not bulk.carries(c.record)]
            by_rest = list({id(c): c for c in retried + uncarried}.values())
            rest = {id(c) for c in by_rest}
            yield from self._bulk([c for c in changes if id(c) not in rest], operation, key, sobject)
        if operation == "delete":
            for chunk in chunks(by_rest, COLLECTION_SIZE):
                params = {"ids": ",".join(cast(str, c.sfid) for c in chunk), "allOrNone": "false"}
                delete = partial(self.context.sf.client.restful, "composite/sobjects", method="DELETE")
                yield self._guarded(chunk, partial(delete, params=params))
        else:
            path = f"composite/sobjects/{sobject}/{key}" if operation == "upsert" else "composite/sobjects"
            yield from self._collections(by_rest, "PATCH", path)

    def _bulk(self, changes: list[Change], operation: str, key: str, sobject: str) -> Iterator[Batch]:
        if not changes:
            return
        # One job holds each record once: two changes bound for one record (two rows redirected to one
        # merge survivor) go one after the other.
        first: dict[str, Change] = {}
        later = [c for c in changes if first.setdefault(str(c.record[key]), c) is not c]
        chunk = list(first.values())
        types = self.fields.types_by_name(sobject)

        def job() -> list[Outcome]:
            records = [{k: v for k, v in c.record.items() if k != "attributes"} for c in chunk]
            outcomes = bulk.run(self.context.sf, sobject, operation, records, key, types)
            return [outcomes[str(c.record[key])] for c in chunk]

        yield self._guarded(chunk, job)
        if later:
            yield from self._write(later, operation, key, sobject)

    def _collections(self, changes: list[Change], method: str, path: str) -> Iterator[Batch]:
        for chunk in chunks(changes, COLLECTION_SIZE):
            body = {"allOrNone": False, "records": [c.record for c in chunk]}
            yield self._guarded(
                chunk, partial(self.context.sf.client.restful, path, method=method, json=body)
            )

    def _mark_sent(self, inserts: list[Change]) -> None:
        """Mark these inserts sent, before they are: should the answer be lost, the pull that brings their
        records gives them to these rows by their key (``warehouse_key.adopt``), and to no other row."""
        self.context.conn.execute(
            "UPDATE sfsync.outbox o SET sent_at = now()"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS d(row_id, change_id)"
            " WHERE o.sobject = %s AND o.row_id = d.row_id AND o.change_id <= d.change_id"
            " AND o.pushed_at IS NULL",
            [[c.row_id for c in inserts], [c.change_id for c in inserts], self.entry.sobject],
        )

    def _guarded(self, chunk: list[Change], call: Callable[[], Any]) -> Batch:
        """One call's outcome per record; a call refused as a whole fails each of its records, so the
        other calls go on."""
        try:
            results = call()
        except CALL_FAILURES as error:
            results = [call_failure(error)] * len(chunk)
            failed = results[0]["errors"][0]
            log.warning(
                "%s: a call for %d records failed: %s: %s",
                self.entry.sobject, len(chunk), failed["statusCode"], failed["message"],
            )  # fmt: skip
        return list(zip(chunk, cast(list[Outcome], results), strict=True))

    def _record(self, change: Change) -> dict[str, Any]:
        """The Salesforce record carrying a change's columns, by their API names."""
        names = self.fields.names(change.sobject)
        record: dict[str, Any] = {"attributes": {"type": change.sobject}}
        if change.operation == "delete":
            return record | {"Id": change.sfid}
        if change.operation == "update":
            record["Id"] = change.sfid
        for column, value in change.values.items():
            if column not in NOT_SENT and column != self.fields.key_column:
                record[names.get(column, column)] = value
        if change.operation == "insert":
            if external_id := self.fields.warehouse_key():
                # Always the row's own key: a row copied with another row's key must not claim its record.
                record[external_id] = self.fields.row_key(change.row_id)
            if change.sobject == "Lead":
                # Salesforce requires both; Marketo fills its configured defaults on the first push only.
                record["LastName"] = record.get("LastName") or self.context.settings.lead_default_last_name
                record["Company"] = record.get("Company") or self.context.settings.lead_default_company
        return record
