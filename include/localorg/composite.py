"""The Composite resource (``POST /services/data/vXX.X/composite``): up to 25 subrequests in one API call.

Every subrequest goes through ``Api.route_call``, the code path of a standalone request, as the caller
(same visibility, validation and errors); only the API usage count is not taken again, since the whole
composite request counts as one call. ``@{ref.field}`` / ``@{ref.list[0].field}`` in a later subrequest's
url or body read an earlier subrequest's response body. With ``allOrNone`` every write runs in one
transaction: the first failure stops processing, keeps its error, and every other subrequest reports
``PROCESSING_HALTED``; without it, only subrequests that reference a failed one are skipped.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from .calls import MAX_VERSION, MIN_VERSION, Call, RouteCall
from .errors import SalesforceError
from .store import Org

SUBREQUEST_LIMIT = 25
QUERY_LIMIT = 5  # query, queryAll and sObject Collections subrequests
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."
_URL = re.compile(r"/services/data/v(\d+)\.0/([^?#]*)")
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_STEP = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
# Resources Salesforce supports inside Composite: sObject resources, query/queryAll (and their next pages),
# sObject Collections. Everything else (Bulk jobs, Composite itself, limits, ...) is refused up front.
_SUPPORTED = re.compile(r"(sobjects(/.*)?|query(All)?(/.*)?|composite/sobjects(/.*)?)")
_COUNTED = re.compile(r"(query(All)?|composite/sobjects)(/.*)?")
# Headers a subrequest inherits from the composite request and may not set itself.
_INHERITED = ("accept", "authorization", "content-type")


class _Halt(Exception):
    """Raised inside the allOrNone transaction to roll every subrequest's writes back."""


class _Unresolved(Exception):
    def __init__(self, reference: str, ref_id: str) -> None:
        super().__init__(reference)
        self.message = f"Invalid reference specified. No value for {reference} found in {ref_id}."


def run(call: Call, org: Org, route_call: RouteCall) -> dict[str, Any]:
    """Execute the subrequests in order, each through ``route_call``; the ``compositeResponse`` list."""
    body = call.json()
    subrequests = _validate(body)
    all_or_none = bool(body.get("allOrNone", False))
    results: list[dict[str, Any]] = []
    if not all_or_none:
        bodies: dict[str, Any] = {}
        for sub in subrequests:
            results.append(_execute(route_call, call, sub, bodies, False))
        return {"compositeResponse": results}
    try:
        with org.transaction(call.user):
            bodies = {}
            for sub in subrequests:
                result = _execute(route_call, call, sub, bodies, True)
                results.append(result)
                if _failed(result):
                    raise _Halt
    except _Halt:
        failed = len(results) - 1
        results = [
            results[i] if i == failed else _halted(sub["referenceId"], HALTED)
            for i, sub in enumerate(subrequests)
        ]
    return {"compositeResponse": results}


def _validate(body: Any) -> list[dict[str, Any]]:
    """Whole-request checks made before any subrequest runs; a failure answers 400 for the request."""
    if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "'compositeRequest' is a required field.")
    subrequests = body["compositeRequest"]
    if not subrequests:
        raise SalesforceError(400, "JSON_PARSER_ERROR", "'compositeRequest' must contain a subrequest.")
    if len(subrequests) > SUBREQUEST_LIMIT:
        raise SalesforceError(
            400,
            "LIMIT_EXCEEDED",
            f"Composite request contains {len(subrequests)} subrequests; the limit is {SUBREQUEST_LIMIT}.",
        )
    seen: set[str] = set()
    counted = 0
    for sub in subrequests:
        if not isinstance(sub, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "A subrequest must be a JSON object.")
        for name in ("method", "url", "referenceId"):
            if not isinstance(sub.get(name), str) or not sub[name]:
                raise SalesforceError(400, "JSON_PARSER_ERROR", f"'{name}' is a required field.")
        if sub["method"] not in METHODS:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Invalid HTTP method: {sub['method']}")
        if sub["referenceId"] in seen:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Duplicate referenceId: {sub['referenceId']}")
        seen.add(sub["referenceId"])
        headers = sub.get("httpHeaders") or {}
        if not isinstance(headers, dict) or any(k.lower() in _INHERITED for k in headers):
            raise SalesforceError(
                400,
                "INVALID_API_INPUT",
                "httpHeaders may not set Accept, Authorization or Content-Type: subrequests inherit them",
            )
        match = _URL.match(urlsplit(sub["url"]).path)
        resource = match.group(2).rstrip("/") if match else ""
        if match is not None and not _SUPPORTED.fullmatch(resource):
            raise SalesforceError(
                400,
                "INVALID_API_INPUT",
                f"The resource {sub['url']} is not supported in a Composite request",
            )
        counted += bool(_COUNTED.fullmatch(resource))
    if counted > QUERY_LIMIT:
        raise SalesforceError(
            400,
            "LIMIT_EXCEEDED",
            f"A Composite request may contain at most {QUERY_LIMIT} query or sObject Collections subrequests",
        )
    return subrequests


def _execute(
    route_call: RouteCall, call: Call, sub: dict[str, Any], bodies: dict[str, Any], all_or_none: bool
) -> dict:
    ref_id = sub["referenceId"]
    try:
        url = _substitute(sub["url"], bodies, in_url=True)
        payload = _substitute(sub.get("body"), bodies, in_url=False)
    except _Unresolved as exc:
        return _halted(ref_id, exc.message)
    parts = urlsplit(url)
    match = _URL.fullmatch(parts.path)
    # Only Accept, Authorization and Content-Type (and the host) come from the composite request.
    headers = {k: v for k, v in call.headers.items() if k in (*_INHERITED, "host")}
    headers.update({str(k).lower(): str(v) for k, v in (sub.get("httpHeaders") or {}).items()})
    method = sub["method"]
    rest = match.group(2) if match else ""
    query = parts.query
    if all_or_none and re.fullmatch(r"composite/sobjects/?.*", rest):
        # The composite allOrNone overrides an sObject Collections subrequest's own flag.
        if method == "DELETE":
            query = re.sub(r"(^|&)allOrNone=[^&]*", "", query).lstrip("&") + "&allOrNone=true"
        elif isinstance(payload, dict):
            payload = {**payload, "allOrNone": True}
    raw = b"" if payload is None else json.dumps(payload).encode()
    try:
        version = int(match.group(1)) if match else 0
        if match is None or not _version_ok(version):
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        status, result = route_call(method, parts.path, query, headers, raw, f"{version}.0", rest, call.user)
    except SalesforceError as exc:
        return {"body": exc.body(), "httpHeaders": {}, "httpStatusCode": exc.status, "referenceId": ref_id}
    response_headers: dict[str, str] = {}
    if status == 201 and method == "POST" and isinstance(result, dict) and "id" in result:
        response_headers["Location"] = f"{parts.path.rstrip('/')}/{result['id']}"
    if result is not None:
        bodies[ref_id] = result
    body = None if status == 204 else result
    return {"body": body, "httpHeaders": response_headers, "httpStatusCode": status, "referenceId": ref_id}


def _version_ok(version: int) -> bool:
    return MIN_VERSION <= version <= MAX_VERSION


def _failed(result: dict[str, Any]) -> bool:
    """An error status, or (allOrNone) an sObject Collections result with a failed record."""
    if result["httpStatusCode"] >= 400:
        return True
    body = result["body"]
    return isinstance(body, list) and any(isinstance(r, dict) and r.get("success") is False for r in body)


def _halted(ref_id: str, message: str) -> dict[str, Any]:
    return {
        "body": [{"errorCode": "PROCESSING_HALTED", "message": message}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref_id,
    }


def _resolve(bodies: dict[str, Any], reference: re.Match[str]) -> Any:
    ref_id, path = reference.group(1), reference.group(2)
    text = reference.group(0)[2:-1]
    if ref_id not in bodies:
        raise _Unresolved(text, ref_id)
    value = bodies[ref_id]
    for step in _STEP.finditer(path):
        key, index = step.groups()
        if key is not None and isinstance(value, dict):
            # Field names resolve as in Salesforce: case-insensitively.
            found = next((k for k in value if k == key), None) or next(
                (k for k in value if k.lower() == key.lower()), None
            )
            value = value[found] if found is not None else None
        elif index is not None and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            value = None
        if value is None:
            raise _Unresolved(text, ref_id)
    if isinstance(value, dict | list):
        raise _Unresolved(text, ref_id)
    return value


def _substitute(value: Any, bodies: dict[str, Any], in_url: bool) -> Any:
    """Replace ``@{...}`` references in strings of ``value`` (recursively through lists and objects)."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole is not None and not in_url:
            return _resolve(bodies, whole)  # a body value that is only a reference keeps its JSON type
        return _REFERENCE.sub(lambda m: _text(_resolve(bodies, m)), value)
    if isinstance(value, list):
        return [_substitute(v, bodies, in_url) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, bodies, in_url) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
