"""Salesforce access: the provider's ``SalesforceHook`` with every call counted and the API budget read.

Every HTTP call to the org passes through one ``requests.Session`` whose response hook counts it and keeps
the latest ``Sforce-Limit-Info: api-usage=N/M`` Salesforce reports, so a run knows what it spent and how
much of the org's daily limit is left, without a ``limits`` call of its own.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import urlencode

import requests

from sfsync.defaults import SALESFORCE_CONN_ID

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
# The client backs off by itself (up to a few seconds between polls); each poll is one API call.
BULK_POLL_SECONDS = 0.2


class SalesforceError(RuntimeError):
    """Salesforce refused a request; the message is Salesforce's own (errorCode: message)."""

    def __init__(self, errors: list[dict[str, Any]] | Any) -> None:
        items = errors if isinstance(errors, list) else [errors]
        super().__init__(
            "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in items if isinstance(e, dict))
        )


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

    @property
    def share_used(self) -> float | None:
        return None if not self.limit else (self.used or 0) / self.limit


class Salesforce:
    """A logged-in client for one task, built from an Airflow connection."""

    def __init__(self, conn_id: str = SALESFORCE_CONN_ID) -> None:
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

        self.meter = CallMeter()
        session = requests.Session()
        session.hooks["response"].append(self.meter)
        self.hook = SalesforceHook(salesforce_conn_id=conn_id, session=session)
        self.client = self.hook.get_conn()

    def describe(self, sobject: str) -> dict[str, Any]:
        """The object describe, as the integration user sees it (invisible fields are absent)."""
        return getattr(self.client, sobject).describe()

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
        version = self.client.sf_version
        body = {
            "allOrNone": False,
            "compositeRequest": [
                {"method": "GET", "url": f"/services/data/v{version}/sobjects/{sobject}/describe",
                 "referenceId": "describe"},
                {"method": "GET", "url": f"/services/data/v{version}/queryAll/?{urlencode({'q': soql})}",
                 "referenceId": "delta", "httpHeaders": {"Sforce-Query-Options": f"batchSize={page_size}"}},
            ],
        }  # fmt: skip
        answer = cast(dict[str, Any], self.client.restful("composite", method="POST", json=body))
        described, delta = answer["compositeResponse"]
        if described["httpStatusCode"] != 200:
            raise SalesforceError(described["body"])
        if delta["httpStatusCode"] == 200:
            return described["body"], delta["body"]
        if any(error.get("errorCode") == "INVALID_FIELD" for error in delta["body"]):
            return described["body"], None
        raise SalesforceError(delta["body"])

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

    def bulk_query_pages(self, sobject: str, soql: str, page_records: int) -> Iterator[str]:
        """A Bulk API 2.0 queryAll job's CSV pages (each with its header row), one in memory at a time."""
        handler = getattr(self.client.bulk2, sobject)
        return handler.query_all(soql, max_records=page_records, wait=BULK_POLL_SECONDS)
