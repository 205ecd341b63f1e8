"""The HTTPS API: a Starlette app that answers Salesforce's login, REST, sObject Collections, Composite,
Bulk API 2.0 and Bulk API 1.0 paths (the REST and Bulk API 1.0 resources through Starlette routes), with
fault injection and admin calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import h11
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import admin, bulk, bulk_v1, composite, faults
from .auth import Sessions, oauth_revoke, oauth_token, soap_login
from .bulk import BulkJobs
from .calls import MAX_VERSION, MIN_VERSION, Call
from .errors import RecordError, SalesforceError, invalid_session, not_found, record_errors
from .held import HeldAnswer
from .ids import normalize_id
from .profile import PROFILES, Profile
from .query import QueryEngine, batch_size
from .schema import SObject, format_datetime, now_ms, parse_datetime
from .store import Org, Txn, User

log = logging.getLogger("localorg")

COLLECTION_LIMIT = 200
REPLICATION_DAYS = 30
_MINUTE = 60_000
# limits/ keys with the Max of a Salesforce Enterprise Edition org; those the org tracks (API requests,
# Bulk API 2.0 usage) report what remains, the rest report Remaining = Max.
_LIMITS = {
    "ConcurrentAsyncGetReportInstances": 200,
    "ConcurrentSyncReportRuns": 20,
    "DailyAnalyticsDataflowJobExecutions": 60,
    "DailyApiRequests": 15_000,
    "DailyAsyncApexExecutions": 250_000,
    "DailyBulkApiBatches": 15_000,
    "DailyBulkV2QueryFileStorageMB": 976_562,
    "DailyBulkV2QueryJobs": 10_000,
    "DailyDurableGenericStreamingApiEvents": 10_000,
    "DailyDurableStreamingApiEvents": 10_000,
    "DailyGenericStreamingApiEvents": 10_000,
    "DailyStandardVolumePlatformEvents": 10_000,
    "DailyStreamingApiEvents": 10_000,
    "DailyWorkflowEmails": 2_000,
    "DataStorageMB": 5,
    "FileStorageMB": 20,
    "HourlyAsyncReportRuns": 1_200,
    "HourlyDashboardRefreshes": 200,
    "HourlyDashboardResults": 5_000,
    "HourlyDashboardStatuses": 999_999_999,
    "HourlyODataCallout": 10_000,
    "HourlyPublishedPlatformEvents": 50_000,
    "HourlySyncReportRuns": 500,
    "HourlyTimeBasedWorkflow": 50,
    "MassEmail": 10,
    "PermissionSets": 1_500,
    "SingleEmail": 15,
    "StreamingApiConcurrentClients": 2_000,
}
_ASYNC = re.compile(r"/services/async/(\d+\.\d+)/(.*)")  # Bulk API 1.0's tree
_ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


Handler = Callable[["Api", Call], tuple[int, Any]]
# Path parameters of the REST resources, as Salesforce's paths spell them (others are any one segment).
for _name, _regex in {
    "sf_name": r"\w+",  # an sObject, field or job name
    "sf_query": "query|queryAll",
    "sf_locator": r"01g[0-9A-Za-z]{12,15}-\d+",  # a query's next-records locator
    "sf_job_kind": "query|ingest",
    "sf_job_results": "successfulResults|failedResults|unprocessedRecords",
}.items():
    register_url_convertor(_name, type(f"{_name}_convertor", (StringConvertor,), {"regex": _regex})())


def _release_label(version: int) -> str:
    offset = version - 59  # v59.0 is Winter '24; three releases a year
    return f"{('Winter', 'Spring', 'Summer')[offset % 3]} '{24 + offset // 3}"


class Api:
    """Request handling state: the org, sessions, query engine and limits."""

    def __init__(self, org: Org, session_timeout: float, daily_api_requests: int, profile: Profile) -> None:
        self.org = org
        self.profile = profile
        self.sessions = Sessions(org.org_id, session_timeout)
        self.engine = QueryEngine(org)
        self.daily_limit = daily_api_requests
        self.faults = faults.Faults()
        org.write_hook = self.faults.check_record_write
        self.bulk = BulkJobs(org, self.engine, self.faults, org.data_dir / "bulk", profile)
        self.async_jobs = bulk_v1.AsyncJobs(self.bulk, self.engine, org)
        self.admin_token = admin.admin_token(org.data_dir)
        org.purge_expired()

    def sobject(self, name: str) -> SObject:
        obj = self.org.schema.get(name)
        if obj is None:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    # -- entry point ------------------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response | _Dropped:
        body = await request.body()
        delay = self._latency(request)
        if delay:
            await asyncio.sleep(delay)  # on the event loop: a request waiting takes no thread from the others
        response = await run_in_threadpool(self.handle, request, body)
        # Clients read the org's clock from Date (the sync freezes its windows with it), so it is stamped
        # when the answer is ready; uvicorn's own header is refreshed only once a second.
        target = response.response if isinstance(response, _Dropped) else response
        if target is not None:
            target.headers["Date"] = formatdate(usegmt=True)
        return response

    def _latency(self, request: Request) -> float:
        """Seconds before an API request is handled: the profile's round trip and any latency fault's."""
        path = request.url.path
        if path.startswith("/localorg/admin/"):
            return 0.0
        rule = self.faults.take(("latency",), path, request.method)
        return (self.profile.rest_latency_ms + (rule.latency_ms if rule else 0)) / 1000

    def handle(self, request: Request, body: bytes) -> Response | _Dropped:
        """Answer one request: admin calls, else the API with any fault rules that match it."""
        path = request.url.path
        if path.startswith("/localorg/admin/"):
            return self._admin(request, body)
        faults.current_route.set(path)
        rule = self.faults.take(faults.REQUEST_KINDS, path, request.method)
        if rule is None:
            return self._respond(request, body)
        if rule.kind == "drop":
            return _Dropped(self._respond(request, body))
        if rule.kind == "drop_before":
            return _Dropped(None)
        return self._fault_response(rule, request)

    def _fault_response(self, rule: faults.Rule, request: Request) -> Response:
        if rule.kind == "http_502":
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
            return Response(page, 502, media_type="text/html")
        if rule.kind == "invalid_session":
            self.sessions.expire(_session_token(request))
            if _ASYNC.fullmatch(request.url.path):
                return bulk_v1.error_answer(bulk_v1.invalid_session(), _async_json(request), {})
            return _json(401, invalid_session().body())
        if rule.kind in ("http_500", "request_limit") and _ASYNC.fullmatch(request.url.path):
            status, code, message = {
                "http_500": (500, "InternalServerError", "An unexpected error occurred"),
                "request_limit": (403, "ExceededQuota", "TotalRequests Limit exceeded."),
            }[rule.kind]
            exc = SalesforceError(status, code, rule.message or message)
            return bulk_v1.error_answer(exc, _async_json(request), {})
        status, code, message = {
            "http_500": (
                500,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this "
                f"ErrorId if you contact support: {uuid.uuid4()}",
            ),
            "http_503": (
                503,
                "SERVER_UNAVAILABLE",
                "Server temporarily unavailable. Please try again later.",
            ),
            "request_limit": (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        }[rule.kind]
        return _json(status, [{"message": rule.message or message, "errorCode": code}])

    def _admin(self, request: Request, body: bytes) -> Response:
        """``/localorg/admin/<operation>``: see the package docstring."""
        try:
            match = re.fullmatch(r"/localorg/admin/([\w-]+)(?:/(\d+))?/?", request.url.path)
            if match is None:
                raise not_found()
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body is not JSON") from None
            user = self._admin_user(request, payload)
            operation, rule_id = match.groups()
            if operation == "faults":
                return _json(200, self._faults_call(request.method, payload, rule_id))
            if request.method != "POST":
                raise SalesforceError(405, "METHOD_NOT_ALLOWED", "Admin operations take POST")
            return _json(200, admin.run(self.org, user, operation, payload))
        except SalesforceError as exc:
            return _json(exc.status, exc.body())

    def _admin_user(self, request: Request, payload: Any) -> User:
        """The admin token acts as ``asUser`` (default: the first System Administrator); a session must
        belong to a user who sees all data."""
        token = request.headers.get("x-localorg-admin-token", "")
        if token:
            if not secrets.compare_digest(token.encode(), self.admin_token.encode()):
                raise invalid_session()
            default = next(u for u in self.org.users.values() if u.view_all).username
            name = payload.get("asUser", default) if isinstance(payload, dict) else default
            if name not in self.org.users:
                raise SalesforceError(400, "INVALID_USER", f"unknown user {name}")
            return self.org.users[name]
        user = self._authenticate(request)
        if not user.view_all:
            raise SalesforceError(403, "INSUFFICIENT_ACCESS", "Admin operations need a System Administrator")
        return user

    def _faults_call(self, method: str, payload: Any, rule_id: str | None) -> Any:
        if method == "GET":
            return {"rules": self.faults.rules(), "kinds": faults.KINDS}
        if method == "DELETE":
            return {"removed": self.faults.clear(int(rule_id) if rule_id else None)}
        if method == "POST":
            specs = payload if isinstance(payload, list) else [payload]
            # "asUser" picks who an admin call acts as (the CLI always sends it); it is not part of a rule.
            if not all(isinstance(spec, dict) for spec in specs):
                raise SalesforceError(400, "INVALID_FAULT", "a fault rule is a JSON object")
            rules = [{k: v for k, v in spec.items() if k != "asUser"} for spec in specs]
            return {"rules": [self.faults.add(spec).as_dict() for spec in rules]}
        raise SalesforceError(405, "METHOD_NOT_ALLOWED", "faults takes GET, POST or DELETE")

    def _respond(self, request: Request, body: bytes) -> Response:
        """Route one API request; every failure becomes a Salesforce-shaped error, never a crash."""
        limit_header: dict[str, str] = {}
        try:
            target = request.url.path + ("?" + request.url.query if request.url.query else "")
            soap_action = request.headers.get("soapaction", "").strip('"')
            if request.method == "POST" and (soap_action == "login" or "/services/Soap/u/" in target):
                version = re.search(r"/services/Soap/u/(\d+\.\d+)", target)
                status, xml = soap_login(
                    self.org,
                    self.sessions,
                    body,
                    request.headers.get("host", ""),
                    version.group(1) if version else "59.0",
                )
                return Response(xml, status, media_type="text/xml; charset=utf-8")
            if "/services/oauth2/token" in target:
                if request.method != "POST":
                    return _json(405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": "Method not allowed"}])
                form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
                status, payload = oauth_token(
                    self.org,
                    self.sessions,
                    form,
                    request.headers.get("authorization"),
                    request.headers.get("host", ""),
                )
                return _json(status, payload)
            if "/services/oauth2/revoke" in target:
                # POST with a form body, or GET with the token in the query string (after the path, which
                # the domain trick puts in the query string too).
                query = (
                    body.decode(errors="replace")
                    if request.method == "POST"
                    else target.partition("/services/oauth2/revoke")[2].lstrip("?")
                )
                form = {k: v[0] for k, v in parse_qs(query).items()}
                status, error = oauth_revoke(self.org, self.sessions, form)
                return Response(status_code=status) if error is None else _json(status, error)
            path = request.url.path
            match = _ASYNC.fullmatch(path)
            if match is not None:
                return self._async(request, body, *match.groups())
            if re.fullmatch(r"/services/data/?", path):
                return _json(
                    200,
                    [
                        {"label": _release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                        for v in range(MIN_VERSION, MAX_VERSION + 1)
                    ],
                )
            match = re.fullmatch(r"/services/data/v(\d+)\.0/(.*)", path)
            if match is None or not MIN_VERSION <= int(match.group(1)) <= MAX_VERSION:
                raise not_found()
            user = self._authenticate(request)
            used, allowed = self.org.count_api_request(self.daily_limit)
            limit_header = {"Sforce-Limit-Info": f"api-usage={used}/{self.daily_limit}"}
            if not allowed:
                raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            status, payload = self._dispatch(request, body, f"{match.group(1)}.0", match.group(2), user)
            if isinstance(payload, Response):
                payload.headers.update(limit_header)
                return payload
            if status == 204:
                return Response(status_code=204, headers=limit_header)
            return _json(status, payload, limit_header)
        except SalesforceError as exc:
            return _json(exc.status, exc.body(), limit_header)
        except Exception:
            error_id = str(uuid.uuid4())
            log.exception("unexpected error %s on %s %s", error_id, request.method, request.url.path)
            return _json(
                500,
                [
                    {
                        "errorCode": "UNKNOWN_EXCEPTION",
                        "message": "An unexpected error occurred. Please "
                        f"include this ErrorId if you contact support: {error_id}",
                    }
                ],
                limit_header,
            )

    def _async(self, request: Request, body: bytes, version: str, rest: str) -> Response:
        """A Bulk API 1.0 request: its session in X-SFDC-Session (Salesforce ignores Authorization there),
        counted as an API request, answered in its own error shapes."""
        limit_header: dict[str, str] = {}
        as_json = _async_json(request)
        try:
            if not MIN_VERSION <= int(float(version)) <= MAX_VERSION:
                raise bulk_v1.error("InvalidVersion", f"Invalid API version: {version}")
            token = request.headers.get("x-sfdc-session", "").strip()
            user = self.sessions.user(token) if token else None
            if user is None:
                raise bulk_v1.invalid_session()
            used, allowed = self.org.count_api_request(self.daily_limit)
            limit_header = {"Sforce-Limit-Info": f"api-usage={used}/{self.daily_limit}"}
            if not allowed:
                raise SalesforceError(403, "ExceededQuota", "TotalRequests Limit exceeded.")
            try:
                route, params = _resolve(bulk_v1.ROUTES, request.method, rest)
            except SalesforceError:
                raise bulk_v1.error("InvalidUrl", f"unknown resource: {request.method} {rest}") from None
            headers = {k.lower(): v for k, v in request.headers.items()}
            call = Call(request.method, request.url.path, params, {}, headers, body, version, user)
            _, answer = route.endpoint(self, call)
            answer.headers.update(limit_header)
            return answer
        except SalesforceError as exc:
            return bulk_v1.error_answer(exc, as_json, limit_header)
        except Exception:
            error_id = str(uuid.uuid4())
            log.exception("unexpected error %s on %s %s", error_id, request.method, request.url.path)
            failure = SalesforceError(500, "InternalServerError", f"An unexpected error occurred: {error_id}")
            return bulk_v1.error_answer(failure, as_json, limit_header)

    def _authenticate(self, request: Request) -> User:
        token = _session_token(request)
        user = self.sessions.user(token) if token else None
        if user is None:
            raise invalid_session()
        return user

    def _dispatch(
        self, request: Request, body: bytes, version: str, rest: str, user: User
    ) -> tuple[int, Any]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return self.route_call(
            request.method, request.url.path, request.url.query, headers, body, version, rest, user
        )

    def route_call(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        version: str,
        rest: str,
        user: User,
    ) -> tuple[int, Any]:
        """Run the handler for ``rest`` (the path after ``/services/data/vXX.X/``): the one code path of
        every API request and every Composite subrequest. ``headers`` have lower-case names."""
        route, params = _resolve(ROUTES, method, rest)
        call = Call(
            method, path, params, parse_qs(query, keep_blank_values=True), headers, body, version, user
        )
        handler: Handler = route.endpoint
        return handler(self, call)

    # -- helpers shared by handlers ---------------------------------------------------------------

    def save_one(self, txn: Txn, obj: SObject, record: Any, record_id: str | None) -> str:
        if not isinstance(record, dict):
            raise SalesforceError(
                400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from request body"
            )
        return self.org.save(txn, obj, record, record_id)

    def upsert_one(
        self, txn: Txn, obj: SObject, field_name: str, value: str, record: dict[str, Any]
    ) -> tuple[str, bool]:
        """Create or update by external id: (Id, created)."""
        f = self.engine.external_id_field(txn.user, obj, field_name)
        return self.org.upsert(txn, obj, f, value, record)


def _resolve(routes: list[Route], method: str, rest: str) -> tuple[Route, dict[str, Any]]:
    """The route of ``rest`` (a path under a version's root) and its path parameters. One trailing slash is
    allowed. The first resource whose path matches answers, so a literal segment (sobjects/Lead/describe)
    is never taken for a record Id, whatever the method."""
    scope = {"type": "http", "method": method, "path": "/" + rest.removesuffix("/")}
    resource = next((r for r in routes if _path_matches(r, scope)), None)
    if resource is None:
        raise not_found()
    candidates = [r for r in routes if r.path == resource.path]
    route = next((r for r in candidates if method in _methods(r)), None)
    if route is None:
        allowed = ",".join(sorted(set().union(*map(_methods, candidates))))
        raise SalesforceError(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
        )
    return route, route.matches(scope)[1]["path_params"]


def _async_json(request: Request) -> bool:
    return bulk_v1.wants_json(request.headers.get("content-type"))


def _session_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not token:
        token = request.headers.get("x-sfdc-session", "")
    return token.strip()


class _Dropped:
    """A connection dropped with the answer cut off mid-body (status, headers and part of the body), or
    with no answer at all when there is no ``response``."""

    def __init__(self, response: Response | None) -> None:
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.response is None:
            # uvicorn closes the connection when the app fails after starting its answer; a header value
            # it must refuse (h11's LocalProtocolError) fails the start after it counts as started, before
            # a byte is sent.
            refused = {"type": "http.response.start", "status": 500, "headers": [(b"x-localorg", b"\n")]}
            with contextlib.suppress(RuntimeError, h11.LocalProtocolError):
                await send(refused)
            raise ConnectionAbortedError("localorg fault injection: connection dropped before the request")

        async def cut(message: Message) -> None:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
                raise ConnectionAbortedError("localorg fault injection: connection dropped")
            await send(message)

        await self.response(scope, receive, cut)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status,
        headers=headers,
        media_type="application/json;charset=UTF-8",
    )


# -- describe and limits ----------------------------------------------------------------------------


def describe_global(api: Api, call: Call) -> tuple[int, Any]:
    objects = [o.describe_global(call.version) for o in api.org.schema.objects.values()]
    return 200, {"encoding": "UTF-8", "maxBatchSize": COLLECTION_LIMIT, "sobjects": objects}


def describe_object(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    return 200, api.org.schema.describe(obj, call.user.profile, call.version)


def object_metadata(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    return 200, {"objectDescribe": obj.describe_global(call.version), "recentItems": []}


def limits(api: Api, call: Call) -> tuple[int, Any]:
    maxima = {**_LIMITS, "DailyApiRequests": api.daily_limit}
    used = {"DailyApiRequests": api.org.api_usage(), **api.bulk.usage()}
    used["DailyBulkApiBatches"] += api.async_jobs.batches_since(now_ms() - 86_400_000)
    return 200, {
        name: {"Max": limit, "Remaining": max(limit - used.get(name, 0), 0)} for name, limit in maxima.items()
    }


# -- query ------------------------------------------------------------------------------------------


def query(api: Api, call: Call) -> tuple[int, Any]:
    soql = call.param("q")
    if not soql:
        raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
    batch = batch_size(call.headers.get("sforce-query-options"))
    return 200, api.engine.execute(
        call.user, soql, call.params["endpoint"] == "queryAll", batch, call.version
    )


def query_more(api: Api, call: Call) -> tuple[int, Any]:
    batch = batch_size(call.headers.get("sforce-query-options"))
    return 200, api.engine.more(call.user, call.params["locator"], batch, call.version)


# -- single records ---------------------------------------------------------------------------------


def create(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    with api.org.write(call.user) as txn:
        record_id = api.save_one(txn, obj, call.json(), None)
    return 201, {"id": record_id, "success": True, "errors": []}


def _fields_param(call: Call) -> list[str] | None:
    fields = call.param("fields")
    return [f for f in fields.split(",") if f.strip()] if fields else None


def retrieve(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    return 200, api.engine.retrieve(call.user, obj, call.params["id"], _fields_param(call), call.version)


def _record_id(obj: SObject, raw: str) -> str:
    record_id = normalize_id(raw)
    if record_id is None:
        raise not_found(f"Provided external ID field does not exist or is not accessible: {raw}")
    if not record_id.startswith(obj.key_prefix):
        raise not_found()
    return record_id


def update(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    with api.org.write(call.user) as txn:
        api.save_one(txn, obj, call.json(), _record_id(obj, call.params["id"]))
    return 204, None


def delete(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    with api.org.write(call.user) as txn:
        api.org.delete(txn, obj, _record_id(obj, call.params["id"]))
    return 204, None


def retrieve_by_external_id(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    return 200, api.engine.retrieve_by_external_id(
        call.user, obj, call.params["field"], call.params["value"], _fields_param(call), call.version
    )


def upsert(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    record = call.json()
    if not isinstance(record, dict):
        raise SalesforceError(
            400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from request body"
        )
    with api.org.write(call.user) as txn:
        record_id, created = api.upsert_one(txn, obj, call.params["field"], call.params["value"], record)
    if created:
        return 201, {"id": record_id, "success": True, "errors": [], "created": True}
    # From API v46.0 an update through upsert answers 200 with a body; before, 204.
    if float(call.version) < 46:
        return 204, None
    return 200, {"id": record_id, "success": True, "errors": [], "created": False}


# -- replication: updated / deleted -----------------------------------------------------------------


def _window(call: Call) -> tuple[int, int]:
    """start/end truncated to the minute, checked as Salesforce checks them; end clamped to now."""
    bounds = []
    for name in ("start", "end"):
        raw = call.param(name)
        if not raw:
            raise SalesforceError(400, "MISSING_ARGUMENT", f"Missing required parameter: {name}")
        try:
            bounds.append(parse_datetime(raw) // _MINUTE * _MINUTE)
        except ValueError:
            raise SalesforceError(400, "INVALID_REPLICATION_DATE", f"Invalid {name} date: {raw}") from None
    start, end = bounds
    now = now_ms() // _MINUTE * _MINUTE
    if end <= start:
        raise SalesforceError(
            400,
            "INVALID_REPLICATION_DATE",
            "startDate must chronologically precede endDate by more than one minute",
        )
    if start < now - REPLICATION_DAYS * 86_400_000:
        raise SalesforceError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
    return start, min(end, now)


def updated(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    start, latest = _window(call)
    ids = api.engine.updated_ids(call.user, obj, start, latest)
    return 200, {"ids": ids, "latestDateCovered": format_datetime(latest)}


def deleted(api: Api, call: Call) -> tuple[int, Any]:
    obj = api.sobject(call.params["obj"])
    start, latest = _window(call)
    rows = api.org.deleted_records(call.user, obj, start, latest)
    return 200, {
        "deletedRecords": [{"id": record_id, "deletedDate": format_datetime(ms)} for record_id, ms in rows],
        "earliestDateAvailable": format_datetime(api.org.earliest_deleted_available() // _MINUTE * _MINUTE),
        "latestDateCovered": format_datetime(latest),
    }


# -- sObject Collections ----------------------------------------------------------------------------


class _RolledBack(Exception):
    """Raised inside the write transaction to undo an allOrNone request that had failures."""


def _collection(api: Api, call: Call, work: list[Callable[[Txn], dict[str, Any]]], all_or_none: bool) -> list:
    """Run one callable per record in one transaction; per-record results in request order."""
    if len(work) > COLLECTION_LIMIT:
        raise SalesforceError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"Record limit reached. Cannot submit more than {COLLECTION_LIMIT} records into this call",
        )
    results: list[dict[str, Any]] = []
    failed = False
    try:
        with api.org.write(call.user) as txn:
            for item in work:
                try:
                    with api.org.savepoint(txn):
                        results.append(item(txn))
                except SalesforceError as exc:
                    failed = True
                    results.append({"success": False, "errors": [e.as_result() for e in record_errors(exc)]})
            if failed and all_or_none:
                raise _RolledBack
    except _RolledBack:
        results = [
            r if not r["success"] else {"success": False, "errors": [_ROLLED_BACK.as_result()]}
            for r in results
        ]
    return results


def _records(call: Call) -> tuple[list[Any], bool]:
    body = call.json()
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SalesforceError(
            400, "JSON_PARSER_ERROR", 'The request body must be {"allOrNone":..,"records":[..]}'
        )
    return body["records"], bool(body.get("allOrNone", False))


def _check_fields(api: Api, call: Call, records: list[Any]) -> None:
    """An unknown or invisible field in any record fails the whole request with 400 INVALID_FIELD, as in
    Salesforce (the body does not deserialise); other problems are per-record results."""
    for record in records:
        try:
            obj, values = _typed(api, record)
        except SalesforceError:
            continue
        api.org.check_fields(call.user, obj, values)


def _typed(api: Api, record: Any) -> tuple[SObject, dict[str, Any]]:
    attributes = record.get("attributes") if isinstance(record, dict) else None
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if not name:
        raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.", [])
    obj = api.org.schema.get(name)
    if obj is None:
        raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.", [])
    return obj, {k: v for k, v in record.items() if k != "attributes"}


def collection_create(api: Api, call: Call) -> tuple[int, Any]:
    records, all_or_none = _records(call)

    def create_one(record: Any) -> Callable[[Txn], dict[str, Any]]:
        def run(txn: Txn) -> dict[str, Any]:
            obj, values = _typed(api, record)
            return {"id": api.org.save(txn, obj, values), "success": True, "errors": []}

        return run

    _check_fields(api, call, records)
    return 200, _collection(api, call, [create_one(r) for r in records], all_or_none)


def collection_update(api: Api, call: Call) -> tuple[int, Any]:
    records, all_or_none = _records(call)

    def update_one(record: Any) -> Callable[[Txn], dict[str, Any]]:
        def run(txn: Txn) -> dict[str, Any]:
            obj, values = _typed(api, record)
            raw_id = next((v for k, v in values.items() if k.lower() == "id"), None)
            if not raw_id:
                raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            values = {k: v for k, v in values.items() if k.lower() != "id"}
            return {
                "id": api.org.save(txn, obj, values, _record_id(obj, str(raw_id))),
                "success": True,
                "errors": [],
            }

        return run

    _check_fields(api, call, records)
    return 200, _collection(api, call, [update_one(r) for r in records], all_or_none)


def collection_upsert(api: Api, call: Call) -> tuple[int, Any]:
    records, all_or_none = _records(call)
    obj = api.sobject(call.params["obj"])
    f = api.engine.external_id_field(call.user, obj, call.params["field"])

    def upsert_one(record: Any) -> Callable[[Txn], dict[str, Any]]:
        def run(txn: Txn) -> dict[str, Any]:
            typed, values = _typed(api, record)
            if typed is not obj:
                raise SalesforceError(
                    400, "INVALID_TYPE", f"Record type {typed.name} does not match {obj.name}", []
                )
            key = next((v for k, v in values.items() if k.lower() == f.name.lower()), None)
            if key is None:
                raise SalesforceError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [])
            record_id, created = api.upsert_one(txn, obj, f.name, str(key), values)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        return run

    _check_fields(api, call, records)
    return 200, _collection(api, call, [upsert_one(r) for r in records], all_or_none)


def collection_delete(api: Api, call: Call) -> tuple[int, Any]:
    ids = [i for i in (call.param("ids") or "").split(",") if i]
    all_or_none = (call.param("allOrNone") or "false").lower() == "true"

    def delete_one(raw: str) -> Callable[[Txn], dict[str, Any]]:
        def run(txn: Txn) -> dict[str, Any]:
            record_id = normalize_id(raw)
            obj = api.org.schema.by_prefix(record_id) if record_id else None
            if record_id is None or obj is None:
                raise SalesforceError(400, "MALFORMED_ID", f"malformed id {raw}", [])
            try:
                api.org.delete(txn, obj, record_id)
            except SalesforceError as exc:
                if exc.code != "NOT_FOUND":
                    raise
                # DeleteResult codes: a record gone from the recycle bin is deleted, an unknown one invalid.
                if api.org.was_purged(record_id):
                    raise SalesforceError(400, "ENTITY_IS_DELETED", "entity is deleted", []) from None
                raise SalesforceError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []
                ) from None
            return {"id": record_id, "success": True, "errors": []}

        return run

    results = _collection(api, call, [delete_one(i) for i in ids], all_or_none)
    for raw, result in zip(ids, results, strict=True):
        result.setdefault("id", normalize_id(raw) or raw)
    return 200, results


# -- Composite --------------------------------------------------------------------------------------


def composite_request(api: Api, call: Call) -> tuple[int, Any]:
    return 200, composite.run(call, api.org, api.route_call)


# -- Bulk API 2.0 -----------------------------------------------------------------------------------


def bulk_create(api: Api, call: Call) -> tuple[int, Any]:
    create = api.bulk.create_query if call.params["kind"] == "query" else api.bulk.create_ingest
    return 200, create(call.user, call.json(), call.version, call.path)


def bulk_list(api: Api, call: Call) -> tuple[int, Any]:
    return 200, api.bulk.list(call.user, call.params["kind"])


def bulk_info(api: Api, call: Call) -> tuple[int, Any]:
    job = api.bulk.get(call.user, call.params["kind"], call.params["job"])
    if job.running:
        return 200, HeldAnswer(job, bulk.STATUS_HOLD_SECONDS, lambda: _json(200, job.info()))
    return 200, job.info()


def bulk_state(api: Api, call: Call) -> tuple[int, Any]:
    job = api.bulk.get(call.user, call.params["kind"], call.params["job"])
    body = call.json()
    if job.kind == "ingest":
        return 200, api.bulk.set_state(job, body)
    if not isinstance(body, dict) or body.get("state") != "Aborted":
        raise SalesforceError(400, "INVALIDJOBSTATE", "A query job can only be set to Aborted")
    return 200, api.bulk.abort(job)


def bulk_delete(api: Api, call: Call) -> tuple[int, Any]:
    api.bulk.delete(api.bulk.get(call.user, call.params["kind"], call.params["job"]))
    return 204, None


def bulk_query_results(api: Api, call: Call) -> tuple[int, Any]:
    job = api.bulk.get(call.user, "query", call.params["job"])
    body, headers = api.bulk.results(job, call.param("locator"), call.param("maxRecords"))
    # Salesforce's CSV carries no charset parameter; Starlette's media_type would add one to text/*.
    return 200, StreamingResponse(body, 200, {**headers, "Content-Type": "text/csv"})


def bulk_upload(api: Api, call: Call) -> tuple[int, Any]:
    api.bulk.upload(api.bulk.get(call.user, "ingest", call.params["job"]), call.body)
    return 201, Response(status_code=201)


def bulk_ingest_results(api: Api, call: Call) -> tuple[int, Any]:
    job = api.bulk.get(call.user, "ingest", call.params["job"])
    return 200, StreamingResponse(
        api.bulk.ingest_results(job, call.params["results"]), 200, {"Content-Type": "text/csv"}
    )


# The REST resources under /services/data/vXX.X/, one Starlette route per path and method set. A path that
# another's parameter would also match (sobjects/{obj}/describe) comes before it: see Api.route_call.
ROUTES = [
    Route("/sobjects", describe_global, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}/describe", describe_object, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}/updated", updated, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}/deleted", deleted, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}", object_metadata, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}", create, methods=["POST"]),
    Route("/sobjects/{obj:sf_name}/{id}", retrieve, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}/{id}", update, methods=["PATCH"]),
    Route("/sobjects/{obj:sf_name}/{id}", delete, methods=["DELETE"]),
    Route("/sobjects/{obj:sf_name}/{field:sf_name}/{value}", retrieve_by_external_id, methods=["GET"]),
    Route("/sobjects/{obj:sf_name}/{field:sf_name}/{value}", upsert, methods=["PATCH"]),
    Route("/limits", limits, methods=["GET"]),
    Route("/{endpoint:sf_query}", query, methods=["GET"]),
    Route("/{endpoint:sf_query}/{locator:sf_locator}", query_more, methods=["GET"]),
    Route("/composite/sobjects", collection_create, methods=["POST"]),
    Route("/composite/sobjects", collection_update, methods=["PATCH"]),
    Route("/composite/sobjects", collection_delete, methods=["DELETE"]),
    Route("/composite/sobjects/{obj:sf_name}/{field:sf_name}", collection_upsert, methods=["PATCH"]),
    Route("/composite", composite_request, methods=["POST"]),
    Route("/jobs/{kind:sf_job_kind}", bulk_create, methods=["POST"]),
    Route("/jobs/{kind:sf_job_kind}", bulk_list, methods=["GET"]),
    Route("/jobs/{kind:sf_job_kind}/{job:sf_name}", bulk_info, methods=["GET"]),
    Route("/jobs/{kind:sf_job_kind}/{job:sf_name}", bulk_state, methods=["PATCH"]),
    Route("/jobs/{kind:sf_job_kind}/{job:sf_name}", bulk_delete, methods=["DELETE"]),
    Route("/jobs/query/{job:sf_name}/results", bulk_query_results, methods=["GET"]),
    Route("/jobs/ingest/{job:sf_name}/batches", bulk_upload, methods=["PUT"]),
    Route("/jobs/ingest/{job:sf_name}/{results:sf_job_results}", bulk_ingest_results, methods=["GET"]),
]


def _path_matches(route: Route, scope: Scope) -> bool:
    """Whether the route's path matches, whatever the method. Starlette's path patterns end in ``$``,
    which also matches before a final newline (an encoded one ends the path): the whole path must match."""
    return route.matches(scope)[0] is not Match.NONE and bool(route.path_regex.fullmatch(scope["path"]))


def _methods(route: Route) -> set[str]:
    """The route's methods as declared (Starlette adds HEAD to GET routes; Salesforce's REST API does not)."""
    return (route.methods or set()) - {"HEAD"}


# Header names as Salesforce spells them; any other name goes out in the usual Title-Case.
_SALESFORCE_NAMES = {
    name.lower().encode(): name.encode()
    for name in (
        "Content-Type",
        "Content-Length",
        "Content-Encoding",
        "Transfer-Encoding",
        "Date",
        "Location",
        "Sforce-Limit-Info",
        "Sforce-Locator",
        "Sforce-NumberOfRecords",
    )
}


def _salesforce_name(name: bytes) -> bytes:
    lower = name.lower()
    return _SALESFORCE_NAMES.get(lower) or b"-".join(part.capitalize() for part in lower.split(b"-"))


class SalesforceHeaderNames:
    """ASGI middleware: Starlette lower-cases every header name, and clients that read Salesforce's headers
    from a plain dict (Airbyte's ``Sforce-Locator``) need them as Salesforce sends them; the server must
    also keep them (uvicorn's h11 mode, not httptools)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def cased(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(_salesforce_name(name), value) for name, value in message.get("headers", [])]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, cased)


def create_app(
    org: Org, session_timeout: float, daily_api_requests: int, profile: Profile = PROFILES["instant"]
) -> Starlette:
    """The ASGI app serving ``org``, as slow as ``profile`` says."""
    api = Api(org, session_timeout, daily_api_requests, profile)
    methods = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]
    return Starlette(
        routes=[Route("/{path:path}", api.__call__, methods=methods)],
        middleware=[Middleware(SalesforceHeaderNames)],
    )
