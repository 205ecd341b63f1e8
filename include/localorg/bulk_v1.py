"""Bulk API 1.0 (``/services/async/XX.X/``): query and queryAll jobs whose batches are SOQL, results in CSV.

A batch's SOQL runs as a Bulk API 2.0 query job does (``BulkJobs``: the same compiler, sharing and field
security, the result spooled as CSV); this module speaks Bulk API 1.0 around it: jobs and batches in XML
(or a job in JSON when the request is JSON), errors as ``exceptionCode``/``exceptionMessage``, the
``X-SFDC-Session`` header, and PK chunking (``Sforce-Enable-PKChunking``).
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import bulk
from .bulk import QUERY_OPERATIONS, BulkJobs, Job
from .calls import Call
from .database import User, quote
from .errors import SalesforceError
from .held import HeldAnswer
from .ids import normalize_id
from .query import Plan, QueryEngine
from .schema import SObject, format_datetime, now_ms
from .store import Org

if TYPE_CHECKING:
    from .server import Api

NAMESPACE = "http://www.force.com/2009/06/asyncapi/dataload"
PK_CHUNK_SIZE, PK_CHUNK_MAX = 100_000, 250_000
# The standard objects Salesforce PK-chunks; every custom object can be.
PK_CHUNK_OBJECTS = frozenset(
    "Account Asset Campaign CampaignMember Case CaseArticle CaseHistory Contact Event EventRelation Lead"
    " LoginHistory Opportunity Task User WorkOrder WorkOrderLineItem".split()
)
# A Bulk API 1.0 query that finds nothing answers this line as its result, not an empty CSV.
NO_RECORDS = b"Records not found for this query"
_BATCH_STATES = {
    "UploadComplete": "Queued",
    "InProgress": "InProgress",
    "JobComplete": "Completed",
    "Failed": "Failed",
    "Aborted": "NotProcessed",
}


def error(code: str, message: str, status: int = 400) -> SalesforceError:
    return SalesforceError(status, code, message)


def invalid_session() -> SalesforceError:
    return error("InvalidSessionId", "Invalid session id")


def wants_json(content_type: str | None) -> bool:
    """Whether a request is JSON (its job answers and errors are then JSON, else XML)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


@dataclass
class Chunking:
    """A job's ``Sforce-Enable-PKChunking`` options."""

    size: int = PK_CHUNK_SIZE
    start_row: str | None = None
    parent: str | None = None


def parse_chunking(header: str | None) -> Chunking | None:
    """``TRUE``, ``FALSE``, or ``chunkSize=N; startRow=Id; parent=Object`` (which imply TRUE)."""
    if header is None:
        return None
    chunking, enabled = Chunking(), True
    for part in filter(None, (p.strip() for p in header.split(";"))):
        key, equals, value = (s.strip() for s in part.partition("="))
        name = key.lower()
        if not equals and name in ("true", "false"):
            enabled = name == "true"
        elif name == "chunksize" and value.isdigit() and 0 < int(value) <= PK_CHUNK_MAX:
            chunking.size = int(value)
        elif name == "chunksize":
            raise error("InvalidJob", f"Invalid chunkSize: {value}; the maximum is {PK_CHUNK_MAX}")
        elif name == "startrow" and normalize_id(value):
            chunking.start_row = normalize_id(value)
        elif name == "parent" and value:
            chunking.parent = value
        else:
            raise error("InvalidJob", f"Invalid Sforce-Enable-PKChunking option: {part}")
    return chunking if enabled else None


def _elapsed_ms(job: Job | None) -> int:
    if job is None or job.started is None:
        return 0
    return int(((job.finished or time.monotonic()) - job.started) * 1000)


@dataclass
class Batch:
    """A batch: its SOQL runs as ``query``, or it runs nothing and keeps the state ``fixed``."""

    id: str
    job_id: str
    soql: str
    result_id: str
    query: Job | None = None
    fixed: str | None = None  # Failed (with ``message``) or NotProcessed (split into PK chunks)
    message: str | None = None
    created: int = field(default_factory=now_ms)

    @property
    def state(self) -> str:
        if self.fixed or self.query is None:
            return self.fixed or "Queued"
        return _BATCH_STATES[self.query.state]

    def info(self) -> dict[str, Any]:
        message = self.message or (self.query.error_message if self.query else None)
        body: dict[str, Any] = {"id": self.id, "jobId": self.job_id, "state": self.state}
        if message and self.state == "Failed":
            body["stateMessage"] = message
        elapsed = _elapsed_ms(self.query)
        return {
            **body,
            "createdDate": self.created,
            "systemModstamp": self.query.modstamp if self.query else self.created,
            "numberRecordsProcessed": self.query.processed if self.query else 0,
            "numberRecordsFailed": 0,
            "totalProcessingTime": elapsed,
            "apiActiveProcessingTime": elapsed,
            "apexProcessingTime": 0,
        }


@dataclass
class AsyncJob:
    """A Bulk API 1.0 query job and its batches."""

    id: str
    operation: str
    obj: SObject
    user: User
    version: str
    concurrency: str
    chunking: Chunking | None
    state: str = "Open"
    batches: list[Batch] = field(default_factory=list)
    created: int = field(default_factory=now_ms)
    modstamp: int = field(default_factory=now_ms)

    def info(self) -> dict[str, Any]:
        states = Counter(b.state for b in self.batches)
        elapsed = sum(_elapsed_ms(b.query) for b in self.batches)
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.obj.name,
            "createdById": self.user.id,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
            "concurrencyMode": self.concurrency,
            "contentType": "CSV",
            "numberBatchesQueued": states["Queued"],
            "numberBatchesInProgress": states["InProgress"],
            "numberBatchesCompleted": states["Completed"],
            "numberBatchesFailed": states["Failed"],
            "numberBatchesTotal": len(self.batches),
            "numberRecordsProcessed": sum(b.query.processed for b in self.batches if b.query),
            "numberRetries": 0,
            "apiVersion": float(self.version),
            "numberRecordsFailed": 0,
            "totalProcessingTime": elapsed,
            "apiActiveProcessingTime": elapsed,
            "apexProcessingTime": 0,
        }


class AsyncJobs:
    """The server's Bulk API 1.0 jobs (they last, as Bulk API 2.0 jobs do, for the server's lifetime)."""

    def __init__(self, jobs: BulkJobs, engine: QueryEngine, org: Org) -> None:
        self.bulk, self.engine, self.org = jobs, engine, org
        self._jobs: dict[str, AsyncJob] = {}
        self._lock = threading.Lock()

    def create(self, user: User, fields: dict[str, str], chunking: Chunking | None, version: str) -> AsyncJob:
        operation = fields.get("operation")
        if operation not in QUERY_OPERATIONS:
            raise error(
                "InvalidJob", f"The local org's Bulk API 1.0 runs query and queryAll jobs: {operation}"
            )
        obj = self.org.schema.get(fields.get("object") or "")
        if obj is None:
            raise error("InvalidJob", f"Unable to find object: {fields.get('object')}")
        content_type = fields.get("contentType") or "XML"  # Salesforce's default
        if content_type != "CSV":
            raise error(
                "InvalidJob", f"The local org answers Bulk API 1.0 queries in CSV only: {content_type}"
            )
        concurrency = fields.get("concurrencyMode") or "Parallel"
        if concurrency not in ("Parallel", "Serial"):
            raise error("InvalidJob", f"Invalid concurrencyMode: {concurrency}")
        job = AsyncJob(self.bulk.new_id("750"), operation, obj, user, version, concurrency, chunking)
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, user: User, job_id: str) -> AsyncJob:
        job = self._jobs.get(normalize_id(job_id) or job_id)
        if job is None:
            raise error("InvalidJob", f"Invalid job id: {job_id}")
        if job.user.id != user.id and not user.view_all:
            raise error("InvalidUser", f"User does not have access to job {job.id}")
        return job

    def set_state(self, job: AsyncJob, state: str | None) -> None:
        """Close (no more batches) or abort (queued batches are not processed, running ones finish)."""
        if state not in ("Closed", "Aborted"):
            raise error("InvalidJobState", f"Invalid state: {state}")
        if job.state == "Aborted" or (state == "Closed" and job.state != "Open"):
            raise error("InvalidJobState", f"Job {job.id} is {job.state}: it cannot be {state}")
        job.state, job.modstamp = state, now_ms()
        if state == "Aborted":
            for query in (b.query for b in job.batches if b.query and b.query.state == "UploadComplete"):
                self.bulk.abort(query)

    def add_batch(self, job: AsyncJob, soql: str, route: str) -> dict[str, Any]:
        """A query batch: the answer is its info as created (Queued); a bad query fails it afterwards."""
        if job.state != "Open":
            raise error("InvalidJobState", f"Job {job.id} is not open: {job.state}")
        try:
            plan = self._plan(job, soql)
        except SalesforceError as exc:
            failed = self._batch(job, soql, fixed="Failed")
            created = failed.info()
            failed.message = f"InvalidBatch : Failed to process query: {exc.code}: {exc.message}"
            return {**created, "state": "Queued"}
        if job.chunking is None:
            return self._run(job, soql, plan, route)
        original = self._batch(job, soql)
        created = original.info()
        refusal = self._refuse_chunking(job.obj, plan)
        if refusal:
            original.fixed, original.message = "Failed", f"InvalidBatch : Failed to process query: {refusal}"
            return created
        for low, high in self._chunks(job.obj, job.chunking):
            self._run(job, soql, plan.id_range(low, high), route)
        original.fixed = "NotProcessed"
        return created

    def _plan(self, job: AsyncJob, soql: str) -> Plan:
        plan = self.engine.compile(job.user, soql, job.operation == "queryAll")
        if plan.obj is not job.obj:
            raise error(
                "INVALID_TYPE_FOR_OPERATION",
                f"The root entity of the requested query ({plan.obj.name}) does not match the entity of "
                f"the requested Bulk API Job ({job.obj.name}).",
            )
        if plan.count:
            raise error("FUNCTIONALITY_NOT_ENABLED", "Aggregate queries not supported in Bulk Query")
        if plan.offset is not None:
            raise error("FUNCTIONALITY_NOT_ENABLED", "OFFSET not supported in Bulk Query")
        if plan.selects_compound:
            raise error("FUNCTIONALITY_NOT_ENABLED", "Selecting compound data not supported in Bulk Query")
        return plan

    @staticmethod
    def _refuse_chunking(obj: SObject, plan: Plan) -> str | None:
        if not obj.custom and obj.name not in PK_CHUNK_OBJECTS:
            return f"Entity '{obj.name}' is not supported for PK chunking"
        if plan.ordered or plan.limit is not None:
            return "PK chunking works only with queries that have no clause other than WHERE"
        return None

    def _chunks(self, obj: SObject, chunking: Chunking) -> list[tuple[str | None, str | None]]:
        """[low, high) Id ranges of ``chunking.size`` rows each, from ``startRow`` (or the first row).

        Salesforce counts every row of the table, deleted ones too, so a chunk can hold fewer results."""
        sql = (
            f'SELECT "Id" FROM (SELECT "Id", ROW_NUMBER() OVER (ORDER BY "Id") AS n FROM {quote(obj.name)} '
            'WHERE "Id" >= ?) WHERE (n - 1) % ? = 0'
        )
        bounds = [row[0] for row in self.org.conn().execute(sql, [chunking.start_row or "", chunking.size])]
        if not bounds:
            return [(chunking.start_row, None)]
        return [(low, high) for low, high in zip(bounds, [*bounds[1:], None], strict=True)]

    def _batch(self, job: AsyncJob, soql: str, **kw: Any) -> Batch:
        batch = Batch(self.bulk.new_id("751"), job.id, soql, self.bulk.new_id("752"), **kw)
        with self._lock:
            job.batches.append(batch)
        return batch

    def _run(self, job: AsyncJob, soql: str, plan: Plan, route: str) -> dict[str, Any]:
        query = self.bulk.query_job("batch", job.user, plan, job.operation, job.version, route, prefix="751")
        batch = Batch(query.id, job.id, soql, self.bulk.new_id("752"), query)
        with self._lock:
            job.batches.append(batch)
        created = batch.info()
        self.bulk.start_query(query)
        return created

    def batch(self, job: AsyncJob, batch_id: str) -> Batch:
        wanted = normalize_id(batch_id) or batch_id
        found = next((b for b in job.batches if b.id == wanted), None)
        if found is None:
            raise error("InvalidBatch", f"Invalid batch id: {batch_id}")
        return found

    @staticmethod
    def result_ids(batch: Batch) -> list[str]:
        if batch.state != "Completed":
            raise error("InvalidBatch", "Batch not completed")
        return [batch.result_id]

    def result(self, batch: Batch, result_id: str) -> Iterator[bytes]:
        if (normalize_id(result_id) or result_id) not in self.result_ids(batch):
            raise error("InvalidBatch", f"Invalid result id: {result_id}")
        assert batch.query is not None
        return self.bulk.whole_result(batch.query) if batch.query.processed else iter((NO_RECORDS,))

    def batches_since(self, since: int) -> int:
        """Batches created after ``since`` (DailyBulkApiBatches counts each, PK chunks too)."""
        with self._lock:
            return sum(b.created > since for job in self._jobs.values() for b in job.batches)


# -- the wire format ---------------------------------------------------------------------------------


def parse_job(body: bytes, as_json: bool) -> dict[str, str]:
    """A ``jobInfo`` request body (JSON, or XML in Salesforce's namespace) as its fields' text."""
    if as_json:
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise error("InvalidJob", "Unable to parse Job")
        return {k: str(v) for k, v in data.items() if v is not None}
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise error("InvalidXML", f"Unable to parse XML: {exc}") from None
    if root.tag != f"{{{NAMESPACE}}}jobInfo":
        raise error("InvalidXML", f"Expected a jobInfo element in namespace {NAMESPACE}")
    return {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in root}


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _xml_node(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"<{name}>{''.join(_xml_node(k, v) for k, v in value.items() if v is not None)}</{name}>"
    return f"<{name}>{escape(_text(value))}</{name}>"


def xml_answer(status: int, root: str, children: list[tuple[str, Any]]) -> Response:
    nodes = "".join(_xml_node(name, value) for name, value in children)
    body = f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NAMESPACE}">{nodes}</{root}>'
    return Response(body, status, media_type="application/xml")


def _dates(info: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """Epoch milliseconds as Bulk API 1.0 prints them: ``...000Z`` in XML, ``...000+0000`` in JSON."""
    dates = {k: format_datetime(info[k]) for k in ("createdDate", "systemModstamp")}
    if not as_json:
        dates = {k: v.removesuffix("+0000") + "Z" for k, v in dates.items()}
    return {**info, **dates}


def job_answer(status: int, job: AsyncJob, as_json: bool) -> Response:
    info = _dates(job.info(), as_json)
    if as_json:
        # Salesforce's JSON jobInfo lists its keys alphabetically, with the ingest-only ones as null.
        extra = {"assignmentRuleId": None, "externalIdFieldName": None, "fastPathEnabled": False}
        body = json.dumps(dict(sorted({**info, **extra}.items())), separators=(",", ":"))
        return Response(body, status, media_type="application/json")
    return xml_answer(status, "jobInfo", list(info.items()))


def batch_answer(status: int, info: dict[str, Any]) -> Response:
    return xml_answer(status, "batchInfo", list(_dates(info, False).items()))


def error_answer(exc: SalesforceError, as_json: bool, headers: dict[str, str]) -> Response:
    if as_json:
        body = json.dumps({"exceptionCode": exc.code, "exceptionMessage": exc.message}, separators=(",", ":"))
        return Response(body, exc.status, headers, media_type="application/json")
    fields = [("exceptionCode", exc.code), ("exceptionMessage", exc.message)]
    answer = xml_answer(exc.status, "error", fields)
    answer.headers.update(headers)
    return answer


# -- the resources under /services/async/XX.X/ ---------------------------------------------------------


def create_job(api: Api, call: Call) -> tuple[int, Any]:
    as_json = wants_json(call.headers.get("content-type"))
    chunking = parse_chunking(call.headers.get("sforce-enable-pkchunking"))
    job = api.async_jobs.create(call.user, parse_job(call.body, as_json), chunking, call.version)
    return 201, job_answer(201, job, as_json)


def job_info(api: Api, call: Call) -> tuple[int, Any]:
    job = api.async_jobs.get(call.user, call.params["job"])
    return 200, job_answer(200, job, wants_json(call.headers.get("content-type")))


def job_state(api: Api, call: Call) -> tuple[int, Any]:
    job = api.async_jobs.get(call.user, call.params["job"])
    as_json = wants_json(call.headers.get("content-type"))
    api.async_jobs.set_state(job, parse_job(call.body, as_json).get("state"))
    return 200, job_answer(200, job, as_json)


def add_batch(api: Api, call: Call) -> tuple[int, Any]:
    job = api.async_jobs.get(call.user, call.params["job"])
    soql = call.body.decode("utf-8-sig", errors="replace").strip()
    return 201, batch_answer(201, api.async_jobs.add_batch(job, soql, call.path))


def _held(query: Job | None, render: Callable[[], Response]) -> Response:
    """A poll of a running batch is answered when it ends, or after bulk.STATUS_HOLD_SECONDS (as in 2.0)."""
    if query is not None and query.running:
        return HeldAnswer(query, bulk.STATUS_HOLD_SECONDS, render)
    answer: Response = render()
    return answer


def batch_list(api: Api, call: Call) -> tuple[int, Any]:
    job = api.async_jobs.get(call.user, call.params["job"])

    def render() -> Response:
        infos = [("batchInfo", _dates(b.info(), False)) for b in list(job.batches)]
        return xml_answer(200, "batchInfoList", infos)

    running = [b.query for b in job.batches if b.query is not None and b.query.running]
    return 200, _held(running[-1] if running else None, render)


def batch_info(api: Api, call: Call) -> tuple[int, Any]:
    job = api.async_jobs.get(call.user, call.params["job"])
    batch = api.async_jobs.batch(job, call.params["batch"])
    return 200, _held(batch.query, lambda: batch_answer(200, batch.info()))


def batch_request(api: Api, call: Call) -> tuple[int, Any]:
    batch = api.async_jobs.batch(api.async_jobs.get(call.user, call.params["job"]), call.params["batch"])
    return 200, Response(batch.soql, 200, {"Content-Type": "text/csv"})


def result_list(api: Api, call: Call) -> tuple[int, Any]:
    batch = api.async_jobs.batch(api.async_jobs.get(call.user, call.params["job"]), call.params["batch"])
    ids = [("result", result_id) for result_id in api.async_jobs.result_ids(batch)]
    return 200, xml_answer(200, "result-list", ids)


def result(api: Api, call: Call) -> tuple[int, Any]:
    batch = api.async_jobs.batch(api.async_jobs.get(call.user, call.params["job"]), call.params["batch"])
    body = api.async_jobs.result(batch, call.params["result"])
    # Salesforce's CSV carries no charset parameter; Starlette's media_type would add one to text/*.
    return 200, StreamingResponse(body, 200, {"Content-Type": "text/csv"})


ROUTES = [
    Route("/job", create_job, methods=["POST"]),
    Route("/job/{job}", job_info, methods=["GET"]),
    Route("/job/{job}", job_state, methods=["POST"]),
    Route("/job/{job}/batch", add_batch, methods=["POST"]),
    Route("/job/{job}/batch", batch_list, methods=["GET"]),
    Route("/job/{job}/batch/{batch}", batch_info, methods=["GET"]),
    Route("/job/{job}/batch/{batch}/request", batch_request, methods=["GET"]),
    Route("/job/{job}/batch/{batch}/result", result_list, methods=["GET"]),
    Route("/job/{job}/batch/{batch}/result/{result}", result, methods=["GET"]),
]
