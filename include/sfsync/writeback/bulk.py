# Not sf.bulk2: a Failed job raises without its id (successes unreadable) and polls 24 h, not to our deadline.
"""Bulk API 2.0 ingest jobs for the push, with an outcome for every record sent.

One job per call: create, upload the CSV, close, poll until it ends. Result files are fetched only when
they say something the job's counters do not: failed rows when there are any, successful rows when new
Ids must be matched back (Salesforce does not keep the upload's order in its results) or the job stopped
early; a record in neither is reported NOT_PROCESSED. A clean update or delete of 10,000 records thus
costs four calls plus the polls.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sfsync.salesforce import Salesforce

#: In Bulk CSV an empty cell leaves a field unchanged; this sets it to null.
NULL = "#N/A"
#: Bytes of CSV per job: Salesforce takes 150 MB once encoded for upload; 100 MB of CSV stays below that.
MAX_UPLOAD_BYTES = 100_000_000
#: Bulk API's limits on one field's and one record's characters: a longer one fails the whole job, naming
#: no record.
MAX_FIELD_CHARS, MAX_RECORD_CHARS = 131_072, 400_000


def carries(record: dict[str, Any]) -> bool:
    """Whether a Bulk job can write every value of ``record`` as a REST call would: a literal ``#N/A`` would
    reach Salesforce as null (it is Bulk CSV's null), and a value or record over Bulk's limits fails the
    job."""
    texts = [v for v in record.values() if isinstance(v, str)]
    return (
        NULL not in texts
        and all(len(v) <= MAX_FIELD_CHARS for v in texts)
        and (sum(map(len, texts)) <= MAX_RECORD_CHARS)
    )


def run(
    sf: Salesforce,
    sobject: str,
    operation: str,
    records: list[dict[str, Any]],
    key: str,
    types: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Each record's outcome by its ``key`` value (an upsert's key is its external Id field), shaped like
    an sObject Collections result (``success``, and ``id`` or ``errors``). ``types`` gives each field's
    Postgres type, to spell its values as Bulk CSV wants them."""
    columns = [key, *sorted({name for record in records for name in record} - {key})]
    data = _csv(columns, records, types)
    if len(data.encode()) > MAX_UPLOAD_BYTES and len(records) > 1:
        half = len(records) // 2
        return run(sf, sobject, operation, records[:half], key, types) | run(
            sf, sobject, operation, records[half:], key, types
        )
    job = sf.bulk_ingest(sobject, operation, data, key if operation == "upsert" else None)
    total, failed = len(records), int(job.get("numberRecordsFailed") or 0)
    processed = int(job.get("numberRecordsProcessed") or 0)
    settled: dict[str, dict[str, Any]] = {}
    if failed:
        for row in _rows(sf.ingest_results(job["id"], "failedResults")):
            settled[row[key]] = {"success": False, "errors": [_error(row["sf__Error"])]}
    if operation == "upsert" or processed < total:
        # New Ids, or a job that stopped early: only the successful results say which records went through.
        if processed > failed:
            for row in _rows(sf.ingest_results(job["id"], "successfulResults")):
                settled[row[key]] = {"success": True, "id": row["sf__Id"]}
    else:
        settled = {str(r[key]): {"success": True, "id": r.get("Id")} for r in records} | settled
    message = job.get("errorMessage") or f"the Bulk job ended {job['state']} before this record"
    missing = {
        "success": False,
        "errors": [{"statusCode": "NOT_PROCESSED", "message": message, "fields": []}],
    }
    return {str(r[key]): settled.get(str(r[key]), missing) for r in records}


def _csv(columns: list[str], records: list[dict[str, Any]], types: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_cell(record[c], types.get(c)) if c in record else "" for c in columns])
    return out.getvalue()


def _cell(value: Any, pg_type: str | None) -> str:
    """A value as Bulk CSV spells it: null as ``#N/A`` (an empty cell would leave the field alone),
    instants in UTC with milliseconds, numbers without exponents."""
    if value is None or value == "":  # Salesforce has no empty strings: an empty text field is null
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or (pg_type or "").startswith(("numeric", "bigint", "double")):
        return format(Decimal(str(value)), "f")
    if pg_type == "timestamptz":
        instant = datetime.fromisoformat(value).astimezone(UTC)
        return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if pg_type == "time":
        return f"{value}.000Z" if len(value) == 8 else f"{value[:12]}Z"
    return str(value)


def _rows(text: str) -> Iterator[dict[str, str]]:
    return csv.DictReader(io.StringIO(text))


def _error(text: str) -> dict[str, Any]:
    """Bulk's ``sf__Error`` (``CODE:message:Field1,Field2 --``, messages may hold colons) as a REST error."""
    code, _, rest = text.partition(":")
    first = rest.split(" --")[0]
    message, _, fields = first.rpartition(":")
    if not message:  # no field part
        message, fields = first, ""
    return {"statusCode": code, "message": message, "fields": [f for f in fields.split(",") if f]}
