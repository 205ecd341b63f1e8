"""Salesforce access: the provider's ``SalesforceHook`` with every call counted and the API budget read.

Every HTTP call to the org passes through one ``requests.Session`` whose response hook counts it and keeps
the latest ``Sforce-Limit-Info: api-usage=N/M`` Salesforce reports, so a run knows what it spent and how
much of the org's daily limit is left, without a ``limits`` call of its own.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import urlencode

import requests
from simple_salesforce.exceptions import SalesforceOperationError
from simple_salesforce.util import call_salesforce

from sfsync import soql
from sfsync.defaults import SALESFORCE_CONN_ID

log = logging.getLogger(__name__)
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
# Bulk job polls back off from BULK_POLL_SECONDS up to MAX_POLL_SECONDS: each poll is one API call.
BULK_POLL_SECONDS = 0.2
MAX_POLL_SECONDS = 5.0
BULK_FINAL_STATES = ("JobComplete", "Failed", "Aborted")
#: A Bulk job still running after this long is aborted and its step fails (and is retried), instead of
#: waiting on a job Salesforce has queued for hours; the sync passes one below its task's time limit.
BULK_JOB_DEADLINE = timedelta(minutes=20)
BULK_CHUNK_BYTES = 1 << 20
#: Records per page of a Bulk query's results: each page costs one call, and streams in chunks whatever
#: its size, so larger pages only save calls. None leaves the page size to Salesforce, which sizes pages
#: by bytes (the full load's way: its jobs hold up to millions of records).
BULK_PAGE_RECORDS = 100_000
#: A Composite request takes 25 subrequests, of which at most 5 may be queries, and counts as one call.
COMPOSITE_SUBREQUESTS = 25
COMPOSITE_QUERIES = 5


class SalesforceError(RuntimeError):
    """Salesforce refused a request; the message is Salesforce's own (errorCode: message)."""

    def __init__(self, errors: list[dict[str, Any]] | Any, about: str = "") -> None:
        items = errors if isinstance(errors, list) else [errors]
        said = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in items if isinstance(e, dict))
        super().__init__(f"{about}: {said}" if about else said)


@dataclass
class CallMeter:
    """Counts the API calls of one client and remembers what Salesforce last said about usage."""

    calls: int = 0
    used: int | None = None
    limit: int | None = None
    server_time: datetime | None = None

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "/services/data/" in response.url or "/services/async/" in response.url:
            self.calls += 1
        if match := _USAGE.search(response.headers.get("Sforce-Limit-Info", "")):
            self.used, self.limit = int(match[1]), int(match[2])
        if date := response.headers.get("Date"):
            self.server_time = parsedate_to_datetime(date).astimezone(UTC)


class Salesforce:
    """A logged-in client for one task, built from an Airflow connection."""

    bulk_deadline = BULK_JOB_DEADLINE

    def __init__(
        self, conn_id: str = SALESFORCE_CONN_ID, bulk_deadline: timedelta = BULK_JOB_DEADLINE
    ) -> None:
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

        self.bulk_deadline = bulk_deadline
        self.meter = CallMeter()
        session = requests.Session()
        session.hooks["response"].append(self.meter)
        self.hook = SalesforceHook(salesforce_conn_id=conn_id, session=session)
        self.client = self.hook.get_conn()

    def user_id(self, conn_id: str | None = None) -> str:
        """The Id of the user that ``conn_id``'s connection logs in as, by default this client's (one
        query)."""
        username = self.hook.get_connection(conn_id or self.hook.conn_id).login or ""
        return str(self.client.query(soql.user_id_query(username))["records"][0]["Id"])

    def describe(self, sobject: str) -> dict[str, Any]:
        """The object describe, as the integration user sees it (invisible fields are absent)."""
        return getattr(self.client, sobject).describe()

    def read_usage(self, sobject: str) -> None:
        """Have the org report its API usage now (the meter keeps it): one small query of an object the
        caller reads anyway; the ``limits`` resource would need the View Setup permission."""
        self.client.query(soql.probe(sobject))

    def now(self) -> datetime:
        """The end of the org's current second, by its clock (the ``Date`` of its last response, usually
        the login's, which costs no API call).

        Windows never depend on our own clock. ``Date`` has whole seconds, so the window ends with the
        second it names: a change committed later within that second is caught by the next lookback.
        """
        if self.meter.server_time is None:
            self.client.restful("limits/")  # only when no call has been made yet
        assert self.meter.server_time is not None
        return self.meter.server_time + timedelta(seconds=1)

    def describe_and_query(
        self, sobject: str, soql: str, page_size: int
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The object describe and the first page of a queryAll, in one composite request (one API call).

        The page is None when the query names a field the caller can no longer see (INVALID_FIELD).
        """
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
        described, delta = self._composite([_describe(sobject), _query_all(soql, headers)])
        _check_describe(sobject, described)
        if delta["httpStatusCode"] == 200:
            return described["body"], delta["body"]
        if any(error.get("errorCode") == "INVALID_FIELD" for error in delta["body"]):
            return described["body"], None
        raise SalesforceError(delta["body"])

    def describe_and_count(self, sobjects: list[str], counts: list[str]) -> list[tuple[dict[str, Any], int]]:
        """Each object's describe and the answer of its ``SELECT COUNT()`` queryAll (``counts``, in the same
        order), in as few composite requests as their limits allow."""
        pairs = zip(sobjects, counts, strict=True)
        answers = self.composites([sub for s, q in pairs for sub in (_describe(s), _query_all(q))])
        answered = zip(sobjects, answers[0::2], answers[1::2], strict=True)
        return [(_check_describe(s, d), _body(c)["totalSize"]) for s, d, c in answered]

    def query_many(self, queries: list[str]) -> list[dict[str, Any]]:
        """The first page of each queryAll, in as few composite requests as their limits allow."""
        return [_body(answer) for answer in self.composites([_query_all(q) for q in queries])]

    def composites(self, subrequests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The answers to ``subrequests`` (without referenceIds: added here), sent as composite requests of
        as many as Salesforce allows in one; each answer has its ``httpStatusCode`` and ``body``."""
        answers: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        for sub in subrequests:
            queries = sum(s["url"].startswith("query") for s in (*batch, sub))
            if len(batch) == COMPOSITE_SUBREQUESTS or queries > COMPOSITE_QUERIES:
                answers += self._composite(batch)
                batch = []
            batch.append(sub)
        return answers + (self._composite(batch) if batch else [])

    def _composite(self, subrequests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        version = self.client.sf_version
        body = {
            "allOrNone": False,
            "compositeRequest": [
                sub | {"url": f"/services/data/v{version}/{sub['url']}", "referenceId": f"r{i}"}
                for i, sub in enumerate(subrequests)
            ],
        }
        answer = cast(dict[str, Any], self.client.restful("composite", method="POST", json=body))
        return cast(list[dict[str, Any]], answer["compositeResponse"])

    def query_pages(
        self, soql: str, page_size: int = 2000, first: dict[str, Any] | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """Every page of a REST queryAll (from ``first`` when already fetched), following nextRecordsUrl."""
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
        page = first or self.client.query(soql, include_deleted=True, headers=headers)
        yield page
        while not page["done"]:
            page = self.client.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
            yield page

    def bulk_query(self, soql: str, page_records: int | None = BULK_PAGE_RECORDS) -> BulkResults:
        """Run a Bulk API 2.0 queryAll job to its end; its CSV result pages (of ``page_records`` records, or
        as Salesforce sizes them when None).

        Each page (with its header row) streams in chunks as the caller reads it, so nothing larger than
        a chunk is held in memory and the download overlaps whatever the caller does with the chunks.
        """
        job = cast(
            dict[str, Any],
            self.client.restful("jobs/query", method="POST", json={"operation": "queryAll", "query": soql}),
        )
        job = self.wait_for_bulk_job("query", job["id"])
        if job["state"] != "JobComplete":
            raise SalesforceOperationError(f"Job failure. Response content: {job.get('errorMessage') or job}")
        return BulkResults(self, job["id"], page_records, int(job["numberRecordsProcessed"]))

    def wait_for_bulk_job(self, kind: str, job_id: str, deadline: timedelta | None = None) -> dict[str, Any]:
        """Poll a Bulk API 2.0 job (``kind`` ``query`` or ``ingest``) until it ends; its final info. A job
        still running at the ``deadline`` is aborted, and TimeoutError names it.

        The first poll goes at once: a small job may be done already (and a server that holds a status
        answer until the job ends, as the local org does, then costs no waiting at all). Later polls wait
        a quarter of the time the job has run so far, within [BULK_POLL_SECONDS, MAX_POLL_SECONDS]: the
        wait overshoots the job's end by at most that, where doubling delays could nearly double it.
        """
        deadline = deadline or self.bulk_deadline
        started = time.monotonic()
        while True:
            job = cast(dict[str, Any], self.client.restful(f"jobs/{kind}/{job_id}"))
            if job["state"] in BULK_FINAL_STATES:
                return job
            if time.monotonic() - started >= deadline.total_seconds():
                with suppress(Exception):  # the deadline is the failure to report
                    self.client.restful(f"jobs/{kind}/{job_id}", method="PATCH", json={"state": "Aborted"})
                raise TimeoutError(f"Bulk {kind} job {job_id} still {job['state']} after {deadline}: aborted")
            log.info(
                "Bulk %s job %s: %s, %s records processed after %.0f s",
                kind, job_id, job["state"], job.get("numberRecordsProcessed", 0), time.monotonic() - started,
            )  # fmt: skip
            time.sleep(min(max(BULK_POLL_SECONDS, (time.monotonic() - started) / 4), MAX_POLL_SECONDS))

    def bulk_ingest(
        self, sobject: str, operation: str, data: str, external_id: str | None = None
    ) -> dict[str, Any]:
        """Run a Bulk API 2.0 ingest job over ``data`` (CSV, LF line endings) to its end; its final info.
        A job that fails before it ends is aborted, so it never goes on unwatched."""
        body = {"object": sobject, "operation": operation, "contentType": "CSV", "lineEnding": "LF"}
        if external_id:
            body["externalIdFieldName"] = external_id
        job_id = cast(dict[str, Any], self.client.restful("jobs/ingest", method="POST", json=body))["id"]
        try:
            self._bulk_call("PUT", f"ingest/{job_id}/batches", data=data.encode(), content_type="text/csv")
            self.client.restful(f"jobs/ingest/{job_id}", method="PATCH", json={"state": "UploadComplete"})
            return self.wait_for_bulk_job("ingest", job_id)
        except Exception:
            with suppress(Exception):  # the original failure is the one to report
                self.client.restful(f"jobs/ingest/{job_id}", method="PATCH", json={"state": "Aborted"})
            raise

    def ingest_results(self, job_id: str, kind: str) -> str:
        """An ended ingest job's ``successfulResults``, ``failedResults`` or ``unprocessedRecords`` CSV."""
        return self._bulk_call("GET", f"ingest/{job_id}/{kind}", accept="text/csv").text

    def _bulk_call(
        self,
        method: str,
        path: str,
        accept: str = "application/json",
        content_type: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """A Bulk API 2.0 request that is not JSON both ways (which ``restful`` expects)."""
        headers = (
            self.client.headers
            | {"Accept": accept}
            | ({"Content-Type": content_type} if content_type else {})
        )
        return call_salesforce(
            f"{self.client.bulk2_url}{path}", method, self.client.session, headers, **kwargs
        )

    def _bulk_pages(self, job_id: str, page_records: int | None) -> Iterator[BulkPage]:
        locator = ""
        while True:
            params = ({"maxRecords": page_records} if page_records else {}) | (
                {"locator": locator} if locator else {}
            )
            path = f"query/{job_id}/results"
            with closing(self._bulk_call("GET", path, accept="text/csv", params=params, stream=True)) as got:
                yield BulkPage(int(got.headers["Sforce-NumberOfRecords"]), _without_nul(got))
                locator = got.headers.get("Sforce-Locator", "null")
            if locator in ("", "null"):
                return


@dataclass
class BulkResults:
    """A finished Bulk query job's result pages. Salesforce keeps them for days, so each iteration reads
    them again from the first page by locator (an API call a page), for a caller whose first use failed."""

    sf: Salesforce
    job_id: str
    page_records: int | None = BULK_PAGE_RECORDS
    records: int = 0

    def __iter__(self) -> Iterator[BulkPage]:
        return self.sf._bulk_pages(self.job_id, self.page_records)


@dataclass
class BulkPage:
    """One page of a Bulk query's CSV result: its record count and its bytes, streamed in chunks."""

    records: int
    chunks: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


def _describe(sobject: str) -> dict[str, Any]:
    return {"method": "GET", "url": f"sobjects/{sobject}/describe"}


def _query_all(soql: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"method": "GET", "url": f"queryAll/?{urlencode({'q': soql})}"} | (
        {"httpHeaders": headers} if headers else {}
    )


def _check_describe(sobject: str, described: dict[str, Any]) -> dict[str, Any]:
    if described["httpStatusCode"] == 404:
        raise SalesforceError(
            described["body"],
            f"{sobject} is no object the integration user can see (check its API name in the registry)",
        )
    return _body(described, sobject)


def _body(answer: dict[str, Any], about: str = "") -> Any:
    """A composite subrequest's answer, or its error."""
    if answer["httpStatusCode"] != 200:
        raise SalesforceError(answer["body"], about)
    return answer["body"]


def _without_nul(response: requests.Response) -> Iterator[bytes]:
    # Salesforce CSV may hold NUL characters, which Postgres text cannot (as simple-salesforce drops them).
    for chunk in response.iter_content(BULK_CHUNK_BYTES):
        yield chunk.replace(b"\x00", b"")
