"""Latency profiles: a realistic org answers late and keeps Bulk jobs running, the instant one does not."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from simple_salesforce import Salesforce

from localorg import profile
from localorg.profile import PROFILES
from localorg.testing import RunningOrg, running_org

pytestmark = pytest.mark.integration

# Small numbers, so the tests stay quick; the limit of one job at a time makes queueing visible.
DELAY = 0.05
BULK_BASE = 0.5
SLOW = dataclasses.replace(
    PROFILES["realistic"],
    rest_latency_ms=int(DELAY * 1000),
    bulk_job_seconds=BULK_BASE,
    bulk_query_concurrency=1,
    bulk_ingest_concurrency=1,
)


def pinned(org: RunningOrg) -> requests.Session:
    """A session that trusts ``org``'s CA, whatever REQUESTS_CA_BUNDLE says (the session org's)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(org.ca_file)
    return session


@contextmanager
def connect(org: RunningOrg) -> Iterator[Salesforce]:
    sf = Salesforce(**org.salesforce_kwargs("integration"), session=pinned(org))
    yield sf
    sf.session.close()  # else the server, when it stops, waits for the idle connection


@pytest.fixture(scope="module")
def slow_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOrg]:
    with running_org(tmp_path_factory.mktemp("slow"), profile=SLOW) as org:
        yield org


@pytest.fixture(scope="module")
def slow_sf(slow_org: RunningOrg) -> Iterator[Salesforce]:
    with connect(slow_org) as sf:
        yield sf


def call(sf: Salesforce, method: str, path: str, csv: str | None = None, **kw: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    if csv is not None:
        headers["Content-Type"] = "text/csv"
    return sf.session.request(method, f"{sf.base_url}{path}", data=csv, headers=headers, **kw)


def timed(work: Callable[[], object]) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


def states(sf: Salesforce, *job_ids: str) -> list[str]:
    """The jobs' states from the job list, which answers at once (a running job's status GET is held)."""
    listed = {j["id"]: j["state"] for j in call(sf, "GET", "jobs/query").json()["records"]}
    return [listed[i] for i in job_ids]


def query_job(sf: Salesforce) -> str:
    job = call(sf, "POST", "jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"}).json()
    assert job["state"] == "UploadComplete"
    return str(job["id"])


def test_profile_round_trips_through_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    for each in (SLOW, *PROFILES.values()):
        assert profile.from_args(parser.parse_args(each.cli_args())) == each
    assert PROFILES["instant"].cli_args() == ["--profile", "instant"]


def test_rest_calls_and_logins_wait_the_round_trip(slow_org: RunningOrg, slow_sf: Salesforce) -> None:
    assert f"profile {SLOW}" in slow_org.log_file.read_text()
    with pinned(slow_org) as login:
        assert timed(lambda: Salesforce(**slow_org.salesforce_kwargs(), session=login)) >= DELAY  # SOAP
        app = slow_org.definition.connected_apps[0]
        oauth = {"grant_type": "client_credentials", "client_id": app.consumer_key}
        oauth["client_secret"] = app.consumer_secret
        url = f"{slow_org.base_url}/services/oauth2/token"
        assert timed(lambda: login.post(url, data=oauth).raise_for_status()) >= DELAY
    assert timed(lambda: slow_sf.query("SELECT Id FROM Lead LIMIT 1")) >= DELAY
    assert timed(lambda: call(slow_sf, "GET", "limits").raise_for_status()) >= DELAY


def test_concurrent_rest_calls_overlap(slow_org: RunningOrg, slow_sf: Salesforce) -> None:
    count = 10
    connections = [pinned(slow_org) for _ in range(count)]
    url, auth = f"{slow_sf.base_url}limits", {"Authorization": f"Bearer {slow_sf.session_id}"}

    def limits(connection: requests.Session) -> None:
        connection.get(url, headers=auth).raise_for_status()

    for connection in connections:  # each connection open, so only the calls are timed
        limits(connection)
    one_by_one = timed(lambda: [limits(c) for c in connections])
    with ThreadPoolExecutor(count) as pool:
        together = timed(lambda: list(pool.map(limits, connections)))
    for connection in connections:
        connection.close()
    assert one_by_one >= count * DELAY
    assert DELAY <= together < one_by_one / 2, "the round trips overlap instead of queueing"


def test_bulk_job_runs_for_the_base_time(slow_sf: Salesforce) -> None:
    started = time.monotonic()
    job = query_job(slow_sf)
    assert states(slow_sf, job) == ["InProgress"]
    early = call(slow_sf, "GET", f"jobs/query/{job}/results")
    assert (early.status_code, early.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    info = call(slow_sf, "GET", f"jobs/query/{job}").json()  # held until the job ends
    assert info["state"] == "JobComplete" and time.monotonic() - started >= BULK_BASE
    assert info["totalProcessingTime"] >= BULK_BASE * 1000
    assert call(slow_sf, "GET", f"jobs/query/{job}/results").status_code == 200


def test_ingest_job_runs_for_the_base_time(slow_sf: Salesforce) -> None:
    job = call(slow_sf, "POST", "jobs/ingest", json={"operation": "insert", "object": "Lead"}).json()["id"]
    data = "LastName,Company,Email\nLovelace,Engines,ada@example.com\n"
    call(slow_sf, "PUT", f"jobs/ingest/{job}/batches", csv=data)
    started = time.monotonic()
    closed = call(slow_sf, "PATCH", f"jobs/ingest/{job}", json={"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"
    info = call(slow_sf, "GET", f"jobs/ingest/{job}").json()
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 1)
    assert time.monotonic() - started >= BULK_BASE


def test_concurrency_limit_queues_jobs_in_upload_complete(slow_sf: Salesforce) -> None:
    started = time.monotonic()
    first, second = query_job(slow_sf), query_job(slow_sf)
    assert states(slow_sf, first, second) == ["InProgress", "UploadComplete"]
    assert call(slow_sf, "GET", f"jobs/query/{first}").json()["state"] == "JobComplete"
    assert call(slow_sf, "GET", f"jobs/query/{second}").json()["state"] == "JobComplete"
    assert time.monotonic() - started >= 2 * BULK_BASE, "the second job waited for the first"


def test_instant_profile_stays_instant(local_org: RunningOrg) -> None:
    assert local_org.profile == PROFILES["instant"]
    assert "profile instant\n" in local_org.log_file.read_text()
    realistic = PROFILES["realistic"]
    with connect(local_org) as sf:
        calls = timed(lambda: [call(sf, "GET", "limits") for _ in range(5)])
        assert calls < 5 * realistic.rest_latency_ms / 1000
        job = query_job(sf)
        assert timed(lambda: call(sf, "GET", f"jobs/query/{job}").json()) < realistic.bulk_job_seconds
