"""Admin operations Salesforce's REST API does not offer: undelete, recycle-bin purge, merge and lead
conversion. The server serves them under ``/localorg/admin/`` and ``python -m localorg admin`` runs
them either through a running server or directly on a data directory (see the package docstring).
Results have the shape of the matching SOAP API results (UndeleteResult, MergeResult, LeadConvertResult).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .database import Txn, User
from .datadir import DIR_MODE, write_private
from .errors import SalesforceError, record_errors
from .ids import normalize_id
from .schema import SObject
from .store import Org

TOKEN_FILE = "admin-token"
OPERATIONS = ("undelete", "purge", "merge", "convert-lead")


def admin_token(data_dir: Path) -> str:
    """The data directory's admin token (created on first use, readable by its owner only)."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(DIR_MODE, parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def run(org: Org, user: User, operation: str, body: Any) -> Any:
    """Run one admin operation as ``user``; raises SalesforceError for a malformed request."""
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    if operation == "undelete":
        return _each_id(org, user, _ids(body), org.undelete)
    if operation == "purge":
        if body.get("expired"):
            return {"purged": org.purge_expired()}
        return _each_id(org, user, _ids(body), org.purge)
    if operation == "merge":
        master = _record(org, str(body.get("masterId") or ""))
        duplicates = [_record(org, str(raw))[1] for raw in body.get("duplicateIds") or []]
        with org.write(user) as txn:
            org.merge(txn, master[0], master[1], duplicates)
        return {"id": master[1], "mergedRecordIds": duplicates, "success": True, "errors": []}
    if operation == "convert-lead":
        _, lead_id = _record(org, str(body.get("leadId") or ""))
        with org.write(user) as txn:
            converted = org.convert_lead(
                txn,
                lead_id,
                account_id=_optional_id(org, body.get("accountId")),
                contact_id=_optional_id(org, body.get("contactId")),
                create_opportunity=not body.get("doNotCreateOpportunity", False),
                opportunity_name=body.get("opportunityName"),
                converted_status=body.get("convertedStatus") or "Closed - Converted",
            )
        return {"leadId": lead_id, **converted, "success": True, "errors": []}
    raise SalesforceError(404, "NOT_FOUND", f"Unknown admin operation {operation}; one of {OPERATIONS}")


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise SalesforceError(400, "MISSING_ARGUMENT", 'Give the record Ids as {"ids": [...]}')
    return [str(i) for i in ids]


def _record(org: Org, raw: str) -> tuple[SObject, str]:
    """The object and 18-character Id of a record Id."""
    record_id = normalize_id(raw)
    obj = org.schema.by_prefix(record_id) if record_id else None
    if record_id is None or obj is None:
        raise SalesforceError(400, "MALFORMED_ID", f"malformed id {raw}", [])
    return obj, record_id


def _optional_id(org: Org, raw: Any) -> str | None:
    return _record(org, str(raw))[1] if raw else None


def _each_id(org: Org, user: User, ids: list[str], action: Callable[[Txn, SObject, str], None]) -> list:
    """Apply ``action`` to each record in one transaction; per-record results in request order."""
    results: list[dict[str, Any]] = []
    with org.write(user) as txn:
        for raw in ids:
            try:
                obj, record_id = _record(org, raw)
                with org.savepoint(txn):
                    action(txn, obj, record_id)
                results.append({"id": record_id, "success": True, "errors": []})
            except SalesforceError as exc:
                errors = [e.as_result() for e in record_errors(exc)]
                results.append({"id": raw, "success": False, "errors": errors})
    return results
