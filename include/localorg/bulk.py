"""Bulk API 2.0: query jobs (SOQL to CSV) and ingest jobs (CSV to records), run on worker threads.

A query job writes its whole result once to spool files, remembering where every row starts, so a
results page (``maxRecords`` rows from ``locator``) is a byte range streamed from disk: memory stays
flat however many rows a job has. A large result is written in slices on parallel connections that
read one snapshot (SQLite formats the CSV with the GIL released), so it is the result of one moment,
as a single statement's would be; a slice is an OFFSET/LIMIT of a table scan, or a share of the
result's rowids found through whatever index serves the query (see ``BulkJobs._reads``). An ingest job
spools the uploaded CSV, writes each record through the store's normal write path (the same validation
as REST, 200 records per transaction, as Salesforce chunks them) and spools the per-record results.
Jobs last for the server's lifetime. The latency profile (``localorg.profile``) may queue jobs in
UploadComplete and keep them InProgress as long as a real org would.
"""

from __future__ import annotations

import base64
import builtins
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import accumulate, islice, pairwise
from pathlib import Path
from typing import Any

from . import faults
from .database import Txn, User
from .datadir import DIR_MODE, private_opener, write_private
from .errors import SalesforceError, not_found, record_errors
from .ids import make_id, normalize_id
from .profile import Profile
from .query import Plan, QueryEngine
from .schema import SObject, format_datetime, now_ms
from .store import Org

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
QUERY_OPERATIONS = ("query", "queryAll")
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
INGEST_CHUNK = 200
NULL_VALUE = "#N/A"  # Bulk CSV's way to set a field to null; an empty field leaves it unchanged
_FETCH_ROWS = 5_000
# A result is sliced only where every slice gets this many rows: a slice costs a connection (and, cut by
# OFFSET, skips the rows before its own without formatting them).
_SLICE_ROWS = 10_000
_SLICES = max(2, min(4, os.cpu_count() or 1))
_SAMPLE_EVERY = 64  # a range-sliced result is cut where one row in this many (by rowid) puts it
_TABLE_SCAN = re.compile(r"SCAN (TABLE \S+ AS )?t")  # a query plan's step: the query's table in rowid order
_READ_BYTES = 1 << 20
_FINAL_STATES = ("JobComplete", "Failed", "Aborted")
_DAY_MS = 86_400_000
# A status GET of a running job answers as soon as the job ends, or after this long with its state then:
# the answer is as honest as an immediate one, but the client's polling back-off (seconds between late
# polls) no longer decides how long an export takes. The hold waits on the event loop, taking no worker
# thread (see held.HeldAnswer), so held polls never keep other requests waiting. As long as the
# longest wait between a sync's polls (sfsync MAX_POLL_SECONDS), and far below any client's read timeout.
STATUS_HOLD_SECONDS = 5.0
_BATCH_RECORDS = 10_000  # Salesforce splits Bulk API 2.0 ingest data into batches of 10,000 records


def _job_error(code: str, message: str, status: int = 400) -> SalesforceError:
    return SalesforceError(status, code, message)


@dataclass
class Job:
    """One Bulk API 2.0 job and its spool directory."""

    id: str
    kind: str  # "query" or "ingest"
    operation: str
    obj: SObject
    user: User
    version: str
    delimiter: str
    line_ending: str
    route: str
    spool: Path
    state: str
    external_id: str | None = None
    plan: Plan | None = None
    created: int = field(default_factory=now_ms)
    modstamp: int = field(default_factory=now_ms)
    error_message: str | None = None
    processed: int = 0
    failed: int = 0
    started: float | None = None
    finished: float | None = None
    uploaded: bool = False
    offsets: array[int] = field(default_factory=lambda: array("q", [0]))  # of every row, over all parts
    parts: list[tuple[Path, int, int]] = field(default_factory=list)  # spool file, first and last byte
    header: bytes = b""
    ended: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    wakers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.error_message = error or self.error_message
        self.modstamp = now_ms()

    @property
    def running(self) -> bool:
        """Waiting for a worker or being processed (a status GET of it is held; see STATUS_HOLD_SECONDS)."""
        return self.state in ("UploadComplete", "InProgress") and not self.ended.is_set()

    def on_settled(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` (on the thread that settles it) once the job ends or is aborted; False, and no
        call, if it is not running."""
        with self.lock:
            if not self.running:
                return False
            self.wakers.append(wake)
            return True

    def forget(self, wake: Callable[[], None]) -> None:
        with self.lock:
            if wake in self.wakers:
                self.wakers.remove(wake)

    def settled(self) -> None:
        with self.lock:
            wakers, self.wakers = self.wakers, []
        for wake in wakers:
            wake()

    def info(self, full: bool = True) -> dict[str, Any]:
        """The job info JSON; ``full`` adds the progress counters of job status GETs."""
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.obj.name,
            "createdById": self.user.id,
            "createdDate": format_datetime(self.created),
            "systemModstamp": format_datetime(self.modstamp),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
        }
        if self.kind == "ingest":
            if self.external_id:
                body["externalIdFieldName"] = self.external_id
            body["contentUrl"] = f"services/data/v{self.version}/jobs/ingest/{self.id}/batches"
        body["lineEnding"] = next(k for k, v in LINE_ENDINGS.items() if v == self.line_ending)
        body["columnDelimiter"] = next(k for k, v in DELIMITERS.items() if v == self.delimiter)
        if full:
            elapsed = int(((self.finished or time.monotonic()) - self.started) * 1000) if self.started else 0
            body["jobType"] = "V2Query" if self.kind == "query" else "V2Ingest"
            body["numberRecordsProcessed"] = self.processed
            if self.kind == "ingest":
                body["numberRecordsFailed"] = self.failed
            body["retries"] = 0
            body["totalProcessingTime"] = elapsed
            if self.kind == "ingest":
                body["apiActiveProcessingTime"] = elapsed
                body["apexProcessingTime"] = 0
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body

    def csv_writer(self, out: Any) -> Any:
        return csv.writer(
            out, delimiter=self.delimiter, lineterminator=self.line_ending, quoting=csv.QUOTE_ALL
        )


class BulkJobs:
    """The server's Bulk API 2.0 jobs."""

    def __init__(
        self, org: Org, engine: QueryEngine, job_faults: faults.Faults, spool_root: Path, profile: Profile
    ) -> None:
        self.org = org
        self.profile = profile
        self.engine = engine
        self.faults = job_faults
        self.root = spool_root
        shutil.rmtree(self.root, ignore_errors=True)  # jobs do not survive a restart
        self.root.mkdir(DIR_MODE, parents=True)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="bulk")
        # A profile's concurrency limit is a pool of that many workers for ingest jobs, another for queries
        # (Bulk API 1.0 batches too): a job waiting for one stays queued (UploadComplete) as on Salesforce,
        # and takes no thread while it waits.
        self._limited = {
            kind: ThreadPoolExecutor(profile.concurrency(kind), thread_name_prefix=f"bulk-{kind}")
            for kind in ("query", "ingest")
            if profile.concurrency(kind)
        }
        # One pool of slice writers for all jobs, as many as CPUs (2 to 4): the slices of concurrent jobs
        # (a full load's four at a time) take their turns instead of thrashing the CPUs and the GIL, and
        # the first job submitted is the first complete (4 jobs on 2 CPUs: 9.3 s instead of 11.1).
        self._slices = ThreadPoolExecutor(_SLICES, thread_name_prefix="bulk-slice")

    def usage(self) -> dict[str, int]:
        """Bulk usage of the last 24 hours in limits/ terms (jobs of this server's lifetime)."""
        since = now_ms() - _DAY_MS
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.created > since]
        queries = [j for j in jobs if j.kind == "query"]
        spooled = sum(path.stat().st_size for j in queries for path in j.spool.glob("result-*.csv"))
        return {
            "DailyBulkV2QueryJobs": len(queries),
            "DailyBulkV2QueryFileStorageMB": -(-spooled // 1_000_000),
            "DailyBulkApiBatches": sum(
                -(-j.processed // _BATCH_RECORDS) for j in jobs if j.kind == "ingest" and j.processed
            ),
        }

    # -- jobs -------------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """A new Id for a job (750) or a Bulk API 1.0 batch (751) or result (752)."""
        with self._lock:
            self._counter += 1
            return make_id(prefix, self._counter * 1009 + int(time.time()) % 1009)

    def _new_job(
        self, kind: str, user: User, body: Any, version: str, route: str, prefix: str = "750", **kw: Any
    ) -> Job:
        delimiter = DELIMITERS.get(body.get("columnDelimiter") or "COMMA")
        line_ending = LINE_ENDINGS.get(body.get("lineEnding") or "LF")
        if delimiter is None or line_ending is None:
            raise _job_error("INVALIDJOB", "columnDelimiter or lineEnding is not valid")
        if (body.get("contentType") or "CSV") != "CSV":
            raise _job_error("INVALIDJOB", "contentType must be CSV")
        job_id = self.new_id(prefix)
        spool = self.root / job_id
        spool.mkdir(DIR_MODE)
        job = Job(
            job_id,
            kind,
            user=user,
            version=version,
            delimiter=delimiter,
            line_ending=line_ending,
            route=route,
            spool=spool,
            **kw,
        )
        with self._lock:
            self._jobs[job_id] = job
        return job

    def get(self, user: User, kind: str, job_id: str) -> Job:
        """A job of ``kind`` the user may see (its creator, or a user who sees all data)."""
        job = self._jobs.get(normalize_id(job_id) or job_id)
        if job is None or job.kind != kind or not (job.user.id == user.id or user.view_all):
            raise not_found()
        return job

    def list(self, user: User, kind: str) -> dict[str, Any]:
        with self._lock:
            jobs = [
                j for j in self._jobs.values() if j.kind == kind and (j.user.id == user.id or user.view_all)
            ]
        return {"done": True, "records": [j.info(full=False) for j in jobs], "nextRecordsUrl": None}

    def abort(self, job: Job) -> dict[str, Any]:
        if job.state in _FINAL_STATES:
            raise _job_error(
                "INVALIDJOBSTATE", f"Aborting already {job.state.removeprefix('Job')} Job not allowed"
            )
        job.set_state("Aborted")
        job.settled()
        return job.info()

    def delete(self, job: Job) -> None:
        if job.state not in (*_FINAL_STATES, "UploadComplete"):
            raise _job_error("INVALIDJOBSTATE", f"Deleting a job in state {job.state} is not allowed")
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.spool, ignore_errors=True)

    def _start(self, job: Job, work: Callable[[Job], None]) -> None:
        def run() -> None:
            faults.current_route.set(job.route)
            job.started = time.monotonic()
            try:
                if job.state == "Aborted":
                    return  # aborted while it waited for a worker: it processes nothing
                rule = self.faults.take(("bulk_job_failed",), job.route)
                if rule is not None:
                    job.set_state("Failed", rule.message or "InternalServerError : Internal server error")
                    return
                job.set_state("InProgress")
                work(job)
                _hold(job, job.started + self.profile.bulk_seconds(job.kind, job.processed))
                if job.state == "InProgress":
                    job.set_state("JobComplete")
            except SalesforceError as exc:
                job.set_state("Failed", f"{exc.code} : {exc.message}")
            except Exception as exc:  # a job fails, the server does not
                job.set_state("Failed", f"InternalServerError : {exc}")
            finally:
                job.finished = time.monotonic()
                job.ended.set()
                job.settled()

        self._limited.get("ingest" if job.kind == "ingest" else "query", self._pool).submit(run)

    # -- query jobs -------------------------------------------------------------------------------

    def create_query(self, user: User, body: Any, version: str, route: str) -> dict[str, Any]:
        """POST jobs/query: compile the SOQL now (its errors are the REST API's), run it on a worker."""
        if not isinstance(body, dict) or body.get("operation") not in QUERY_OPERATIONS:
            raise _job_error("INVALIDJOB", "operation must be query or queryAll")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise _job_error("INVALIDJOB", "query is required")
        plan = self.engine.compile(user, soql, body["operation"] == "queryAll")
        # Bulk API 2.0 refuses aggregate functions and OFFSET (LIMIT and ORDER BY are allowed).
        if plan.count:
            raise _job_error(
                "INVALIDJOB", "Aggregate functions such as COUNT() are not supported by Bulk API 2.0"
            )
        if plan.offset is not None:
            raise _job_error("INVALIDJOB", "OFFSET is not supported by Bulk API 2.0")
        if plan.selects_compound:
            raise _job_error("API_ERROR", "Selecting compound data not supported in Bulk Query")
        job = self.query_job("query", user, plan, body["operation"], version, route, body)
        created = job.info(full=False)  # the job's state when created, whatever the worker has done since
        self.start_query(job)
        return created

    def query_job(
        self,
        kind: str,
        user: User,
        plan: Plan,
        operation: str,
        version: str,
        route: str,
        body: Any = None,
        prefix: str = "750",
    ) -> Job:
        """A query job of ``plan``, waiting to be started (a Bulk API 1.0 batch is one, of kind "batch")."""
        return self._new_job(
            kind,
            user,
            body or {},
            version,
            route,
            prefix,
            operation=operation,
            obj=plan.obj,
            state="UploadComplete",
            plan=plan,
        )

    def start_query(self, job: Job) -> None:
        self._start(job, self._run_query)

    def _run_query(self, job: Job) -> None:
        assert job.plan is not None
        header, sql, params = job.plan.csv(job.delimiter)
        quoted = job.delimiter.join('"' + name.replace('"', '""') + '"' for name in header)
        job.header = (quoted + job.line_ending).encode()
        conns = self.org.snapshot(_SLICES)
        try:
            reads = self._reads(conns[0], job.plan, job.delimiter, sql, params)
            futures = [
                self._slices.submit(self._write_slice, job, conn, read_sql, read_params, f"result-{i}.csv")
                for i, (conn, (read_sql, read_params)) in enumerate(zip(conns, reads, strict=False))
            ]
            wait(futures)
            parts = [future.result() for future in futures]
        finally:
            for conn in conns:
                conn.close()

        position = 0
        for path, offsets in parts:
            job.parts.append((path, position, position + offsets[-1]))
            job.offsets.extend(o + position for o in islice(offsets, 1, None))
            position += offsets[-1]

    @staticmethod
    def _reads(
        conn: sqlite3.Connection, plan: Plan, delimiter: str, sql: str, params: builtins.list[Any]
    ) -> builtins.list[tuple[str, builtins.list[Any]]]:
        """The statements (SQL, parameters) that read the result's CSV lines, one slice each, in order.

        Where ``sql`` scans the table in rowid order (the result's order), the slices are OFFSET and LIMIT
        of it, the result counted first: a slice skips the rows before its own as cheaply as SQLite steps
        through the table. Where an index gives the result's order by its first key (a delta's
        SystemModstamp), the slices are ranges of that key, cut where a sample of the result puts them:
        each slice finds and formats its own rows, and no step reads the whole result alone. Any other way
        (OFFSET through an index, or sorting in a temporary B-tree) would make each slice find again every
        row before its own, or sort the formatted lines of the whole result: the result's rowids are read
        in order instead (the REST query's statement, which reads only the columns it tests and sorts no
        more than the rowids), and each slice formats its share of them, looked up by rowid. Every way, a
        job reads only its own rows wherever an index finds them.
        """
        steps = [step[-1] for step in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        ordered = not any("TEMP B-TREE" in step for step in steps)
        if _TABLE_SCAN.fullmatch(steps[0]) and ordered:
            total = plan.count_rows(conn)
            return [(sql, [*params[:-2], limit, offset]) for offset, limit in _slice_bounds(total)]
        if plan.leading and ordered and plan.limit is None and not plan.offset:
            sample = plan.leading_sample(conn, _SAMPLE_EVERY)
            slices = len(_slice_bounds(len(sample) * _SAMPLE_EVERY))
            cuts = sorted({sample[len(sample) * i // slices] for i in range(1, slices)} - {None})
            bounds = [None, *cuts, None]
            return [plan.csv(delimiter, low, high)[1:] for low, high in pairwise(bounds)]
        rowids = plan.rowids(conn, export=True)
        by_rowid, extra = plan.csv_by_rowid(delimiter)
        return [
            (by_rowid, [json.dumps(rowids[offset : offset + limit].tolist()), *extra])
            for offset, limit in _slice_bounds(len(rowids))
        ]

    def _write_slice(
        self, job: Job, conn: sqlite3.Connection, sql: str, params: builtins.list[Any], name: str
    ) -> tuple[Path, array[int]]:
        """Spool one slice: its file and the offsets of its rows in it (the last one is its size)."""
        ending = job.line_ending.encode()
        offsets = array("q", [0])
        path = job.spool / name
        with open(path, "wb", opener=private_opener) as out:
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(_FETCH_ROWS):
                if job.state != "InProgress":
                    break
                lines = [row[0] + ending for row in rows]
                offsets.extend(islice(accumulate(map(len, lines), initial=offsets[-1]), 1, None))
                out.write(b"".join(lines))
                with job.lock:
                    job.processed += len(lines)
            cursor.close()
        return path, offsets

    def results(self, job: Job, locator: str | None, max_records: str | None) -> tuple[Iterator[bytes], dict]:
        """GET jobs/query/{id}/results: one page of CSV and its Sforce-* headers."""
        if job.state != "JobComplete":
            raise _job_error("INVALIDJOBSTATE", f"Cannot get results of a job in state {job.state}")
        total = len(job.offsets) - 1
        start = _decode_locator(locator, total) if locator else 0
        if max_records is None:
            count = total - start
        elif max_records.isdigit() and int(max_records) > 0:
            count = min(int(max_records), total - start)
        else:
            raise _job_error("INVALIDJOB", f"Invalid maxRecords: {max_records}")
        end = start + count
        headers = {
            "Sforce-NumberOfRecords": str(count),
            # Salesforce's locators are opaque base64 strings; the literal "null" marks the last page.
            "Sforce-Locator": _encode_locator(end) if end < total else "null",
        }
        return self._stream(job, job.offsets[start], job.offsets[end]), headers

    def whole_result(self, job: Job) -> Iterator[bytes]:
        """The CSV of a completed query job, header and every row."""
        return self._stream(job, 0, job.offsets[-1])

    def _stream(self, job: Job, first: int, last: int) -> Iterator[bytes]:
        yield job.header
        for path, start, end in job.parts:
            if end <= first or start >= last:
                continue
            with path.open("rb") as data:
                data.seek(max(first, start) - start)
                remaining = min(last, end) - max(first, start)
                while remaining > 0:
                    chunk = data.read(min(_READ_BYTES, remaining))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk

    # -- ingest jobs ------------------------------------------------------------------------------

    def create_ingest(self, user: User, body: Any, version: str, route: str) -> dict[str, Any]:
        """POST jobs/ingest: a job in state Open, waiting for its CSV."""
        if not isinstance(body, dict) or body.get("operation") not in INGEST_OPERATIONS:
            raise _job_error("INVALIDJOB", f"operation must be one of {', '.join(INGEST_OPERATIONS)}")
        obj = self.org.schema.get(str(body.get("object") or ""))
        if obj is None:
            raise _job_error("INVALIDJOB", f"Unable to find object: {body.get('object')}")
        operation = body["operation"]
        external_id = None
        if operation == "upsert":
            name = body.get("externalIdFieldName")
            if not name:
                raise _job_error("INVALIDJOB", "External ID was blank for upsert")
            try:
                external_id = self.engine.external_id_field(user, obj, name).name
            except SalesforceError:
                raise _job_error(
                    "INVALIDJOB", f"The external id field {name} is not valid for {obj.name}"
                ) from None
        if operation == "hardDelete" and not self.org.can_hard_delete(user):
            raise _job_error(
                "FEATURENOTENABLED",
                "Bulk API Hard Delete permission is required to create a hardDelete job",
            )
        job = self._new_job(
            "ingest",
            user,
            body,
            version,
            route,
            operation=operation,
            obj=obj,
            state="Open",
            external_id=external_id,
        )
        return job.info(full=False)

    def upload(self, job: Job, data: bytes) -> None:
        """PUT jobs/ingest/{id}/batches: the job's CSV; Salesforce takes exactly one upload per job."""
        if job.state != "Open":
            raise _job_error("INVALIDJOBSTATE", f"Job is not open for uploads: {job.state}")
        if job.uploaded:
            raise _job_error(
                "BULK_API_ERROR",
                f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the "
                "current Job then create a new Job and make sure you only do 'PUT' once on a given Job.",
            )
        write_private(job.spool / "data.csv", data)
        job.uploaded = True

    def set_state(self, job: Job, body: Any) -> dict[str, Any]:
        """PATCH jobs/ingest/{id}: UploadComplete starts processing; Aborted stops the job."""
        state = body.get("state") if isinstance(body, dict) else None
        if state == "Aborted":
            return self.abort(job)
        if state != "UploadComplete":
            raise _job_error("INVALIDJOBSTATE", f"Invalid state: {state}")
        if job.state != "Open":
            raise _job_error("INVALIDJOBSTATE", f"Closing a job in state {job.state} is not allowed")
        job.set_state("UploadComplete")
        closed = job.info(full=False)
        self._start(job, self._run_ingest)
        return closed

    def _rows(self, job: Job) -> Iterator[builtins.list[str]]:
        if not job.uploaded:
            return iter(())
        text = io.TextIOWrapper((job.spool / "data.csv").open("rb"), encoding="utf-8-sig", newline="")
        return csv.reader(text, delimiter=job.delimiter)

    def _run_ingest(self, job: Job) -> None:
        rows = self._rows(job)
        columns = next(rows, None)
        if not columns:
            raise SalesforceError(400, "InvalidBatch", "No data was uploaded for this job")
        record = self._record_builder(job, columns)
        id_index = next((i for i, c in enumerate(columns) if c.lower() == "id"), None)
        results = {
            name: open(job.spool / f"{name}.csv", "w", newline="", encoding="utf-8", opener=private_opener)
            for name in ("successfulResults", "failedResults", "unprocessedRecords")
        }
        try:
            writers = {name: job.csv_writer(out) for name, out in results.items()}
            writers["successfulResults"].writerow(["sf__Id", "sf__Created", *columns])
            writers["failedResults"].writerow(["sf__Id", "sf__Error", *columns])
            writers["unprocessedRecords"].writerow(columns)
            chunk: builtins.list[builtins.list[str]] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) == INGEST_CHUNK:
                    self._ingest_chunk(job, chunk, record, writers, id_index)
                    chunk = []
            self._ingest_chunk(job, chunk, record, writers, id_index)
        finally:
            for out in results.values():
                out.close()

    def _ingest_chunk(
        self,
        job: Job,
        chunk: builtins.list[builtins.list[str]],
        record: Callable,
        writers: dict,
        id_index: int | None,
    ) -> None:
        if not chunk:
            return
        if job.state != "InProgress":
            writers["unprocessedRecords"].writerows(chunk)
            return
        org = self.org
        with org.write(job.user) as txn:
            for row in chunk:
                try:
                    with org.savepoint(txn):
                        record_id, created = record(txn, row)
                    writers["successfulResults"].writerow([record_id, str(created).lower(), *row])
                except SalesforceError as exc:
                    job.failed += 1
                    known_id = row[id_index] if id_index is not None and id_index < len(row) else ""
                    writers["failedResults"].writerow([known_id, _bulk_error(exc), *row])
                job.processed += 1
        job.modstamp = now_ms()

    def _record_builder(
        self, job: Job, columns: builtins.list[str]
    ) -> Callable[[Txn, builtins.list[str]], tuple[str, bool]]:
        """A function writing one CSV row through the store: (Id, created). Bad headers fail the job."""
        engine, obj, org = self.engine, job.obj, self.org
        if job.operation in ("delete", "hardDelete"):
            if [c.lower() for c in columns] != ["id"]:
                raise SalesforceError(
                    400, "InvalidBatch", f"The '{job.operation}' batch must contain only ids"
                )
            remove = org.delete if job.operation == "delete" else org.hard_delete

            def delete(txn: Txn, row: builtins.list[str]) -> tuple[str, bool]:
                record_id = _row_id(obj, row[0] if row else "")
                remove(txn, obj, record_id)
                return record_id, False

            return delete
        fields = {}
        for name in columns:
            try:
                fields.update(org.check_fields(job.user, obj, {name: None}))
            except SalesforceError:
                raise SalesforceError(400, "InvalidBatch", f"Field name not found : {name}") from None
        id_column = next((i for i, c in enumerate(columns) if fields[c].type == "id"), None)

        def values(row: builtins.list[str]) -> dict[str, Any]:
            body: dict[str, Any] = {}
            for name, value in zip(columns, row, strict=False):
                if value == "":
                    continue  # an empty field leaves the value unchanged
                body[name] = None if value == NULL_VALUE else _typed_value(fields[name].type, value)
            return body

        def write(txn: Txn, row: builtins.list[str]) -> tuple[str, bool]:
            body = values(row)
            if job.operation == "insert":
                return org.save(txn, obj, body), True
            if job.operation == "upsert":
                assert job.external_id is not None
                key = next((v for k, v in body.items() if k.lower() == job.external_id.lower()), None)
                if key is None:
                    raise SalesforceError(400, "MISSING_ARGUMENT", f"{job.external_id} not specified", [])
                f = engine.external_id_field(txn.user, obj, job.external_id)
                return org.upsert(txn, obj, f, str(key), body)
            raw = row[id_column] if id_column is not None and id_column < len(row) else ""
            if not raw:
                raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            record_id = _row_id(obj, raw)
            return org.save(
                txn, obj, {k: v for k, v in body.items() if fields[k].type != "id"}, record_id
            ), False

        return write

    def ingest_results(self, job: Job, kind: str) -> Iterator[bytes]:
        """GET successfulResults / failedResults / unprocessedRecords of a finished ingest job."""
        path = job.spool / f"{kind}.csv"
        if job.state not in _FINAL_STATES:
            raise _job_error("INVALIDJOBSTATE", f"Results are not available in state {job.state}")
        if not path.exists():  # failed before processing: every uploaded row is unprocessed
            if kind == "unprocessedRecords" and job.uploaded:
                path = job.spool / "data.csv"
            else:
                return iter((b"",))
        return _read_file(path)


def _hold(job: Job, until: float) -> None:
    """Keep a processed job InProgress until ``until`` (``time.monotonic()``), as a profile says a real
    org would; an abort ends the wait."""
    remaining = until - time.monotonic()
    if remaining <= 0:
        return
    woken = threading.Event()
    if job.on_settled(woken.set):
        woken.wait(remaining)
        job.forget(woken.set)


def _slice_bounds(total: int) -> builtins.list[tuple[int, int]]:
    """(OFFSET, LIMIT) of each slice of a result of ``total`` rows."""
    size = max(1, -(-total // max(1, min(_SLICES, total // _SLICE_ROWS))))
    return [(offset, min(size, total - offset)) for offset in range(0, total, size)] or [(0, 0)]


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as data:
        while chunk := data.read(_READ_BYTES):
            yield chunk


def _typed_value(field_type: str, value: str) -> Any:
    """CSV text as the JSON value the store's codecs expect (they already parse numbers and dates)."""
    if field_type == "boolean":
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    return value


def _row_id(obj: SObject, raw: str) -> str:
    record_id = normalize_id(raw.strip())
    if record_id is None:
        raise SalesforceError(400, "MALFORMED_ID", f"malformed id {raw}", ["Id"])
    if not record_id.startswith(obj.key_prefix):
        raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
    return record_id


def _bulk_error(exc: SalesforceError) -> str:
    """Bulk's sf__Error: ``CODE:message:Field1,Field2 --`` for each error."""
    return " ".join(f"{e.status_code}:{e.message}:{','.join(e.fields)} --" for e in record_errors(exc))


def _encode_locator(position: int) -> str:
    return base64.b64encode(str(position).encode()).decode().rstrip("=")


def _decode_locator(locator: str, total: int) -> int:
    try:
        position = int(base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True))
    except ValueError:
        position = -1
    if not 0 <= position <= total:
        raise _job_error("INVALIDLOCATOR", f"Invalid locator: {locator}")
    return position
