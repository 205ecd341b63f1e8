"""Fault injection, scripted at run time through /localorg/admin/faults, seen by the real client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from simple_salesforce import (
    Salesforce,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.exceptions import SalesforceOperationError

from localorg.faults import Faults
from localorg.testing import RunningOrg
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration


@pytest.fixture
def fault(local_org: RunningOrg) -> Iterator[Callable[..., dict]]:
    def add(kind: str, **rule: object) -> dict:
        status, body = local_org.admin("faults", {"kind": kind, **rule})
        assert status == 200, body
        return body["rules"][0]  # type: ignore[index]

    yield add
    local_org.admin("faults", method="DELETE")


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("http_500", SalesforceGeneralError, 500),
        ("http_502", SalesforceGeneralError, 502),
        ("http_503", SalesforceGeneralError, 503),
        ("request_limit", SalesforceRefusedRequest, 403),
    ],
)
def test_http_errors_fire_count_times(
    sf: Salesforce, fault: Callable[..., dict], kind: str, error: type, status: int
) -> None:
    fault(kind, route="/query", count=2)
    for _ in range(2):
        with pytest.raises(error) as caught:
            sf.query("SELECT Id FROM Lead LIMIT 1")
        assert caught.value.status == status
    sf.query("SELECT Id FROM Lead LIMIT 1")  # the rule retired after its count
    sf.Lead.describe()


def test_latency_and_route_selection(
    sf: Salesforce, fault: Callable[..., dict], local_org: RunningOrg
) -> None:
    rule = fault("latency", route="/describe$", latency_ms=1000)
    started = time.monotonic()
    sf.query("SELECT Id FROM Lead LIMIT 1")
    unfaulted = time.monotonic() - started
    started = time.monotonic()
    sf.Lead.describe()
    faulted = time.monotonic() - started
    # An injected second dwarfs a slow CI machine's noise: compare the two rather than a fixed bound.
    assert faulted >= 1.0 and unfaulted < faulted - 0.5
    _, listed = local_org.admin("faults", method="GET")
    assert [r["fired"] for r in listed["rules"]] == [1]  # type: ignore[index]
    assert local_org.admin(f"faults/{rule['id']}", method="DELETE")[1] == {"removed": 1}


def test_dropped_connection(sf: Salesforce, fault: Callable[..., dict]) -> None:
    fault("drop", route="/query", count=1)
    with pytest.raises(requests.exceptions.RequestException):
        sf.query("SELECT Id, Name FROM Lead LIMIT 50")
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] >= 0


def test_drop_before_commits_nothing_and_drop_after_commits(
    sf: Salesforce, fault: Callable[..., dict], unique: Callable[[], str]
) -> None:
    def created(company: str) -> int:
        return sf.query(f"SELECT COUNT() FROM Lead WHERE Company = '{company}'")["totalSize"]

    before, after = unique(), unique()
    fault("drop_before", route="sobjects/Lead/?$", method="POST", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Lead.create(lead(Company=before))
    assert created(before) == 0  # the org never saw the request: a retry is safe
    fault("drop", route="sobjects/Lead/?$", method="POST", count=1)
    with pytest.raises(requests.exceptions.RequestException):
        sf.Lead.create(lead(Company=after))
    assert created(after) == 1  # committed, only the answer was lost: a blind retry would duplicate it
    sf.Lead.create(lead(Company=before))  # both rules retired after their count
    assert created(before) == 1


def test_expired_session(connect: Callable[[str], Salesforce], fault: Callable[..., dict]) -> None:
    client = connect("integration")
    old = client.session_id
    fault("invalid_session", route="/query", count=1)
    # simple-salesforce answers INVALID_SESSION_ID by logging in again and retrying.
    client.query("SELECT Id FROM Lead LIMIT 1")
    dead = requests.get(f"{client.base_url}limits/", headers={"Authorization": f"Bearer {old}"})
    assert (dead.status_code, dead.json()[0]["errorCode"]) == (401, "INVALID_SESSION_ID")
    assert client.session_id != old
    bare = Salesforce(session_id=old, instance_url=client.base_url.split("/services")[0])
    with pytest.raises(SalesforceExpiredSession):
        bare.query("SELECT Id FROM Lead LIMIT 1")


def test_unable_to_lock_row_per_record(
    sf: Salesforce, fault: Callable[..., dict], unique: Callable[[], str]
) -> None:
    fault("lock_row", route="composite/sobjects", count=1)
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [{"attributes": {"type": "Lead"}, **lead()} for _ in range(3)]},
    )
    assert [r["success"] for r in results] == [False, True, True]
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    fault("lock_row", route="sobjects/Lead", count=1)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create(lead())
    assert caught.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    fault("lock_row", route="jobs/ingest", count=1)
    company = unique()
    [job] = sf.bulk2.Lead.insert(records=[lead(Company=company) for _ in range(3)], wait=0)
    failed = sf.bulk2.Lead.get_failed_records(job["job_id"])
    assert job["numberRecordsFailed"] == 1 and "UNABLE_TO_LOCK_ROW:" in failed


def test_failed_bulk_job(sf: Salesforce, fault: Callable[..., dict]) -> None:
    fault("bulk_job_failed", route="jobs/query", count=1, message="InternalServerError : disk full")
    with pytest.raises(SalesforceOperationError, match="disk full"):
        list(sf.bulk2.Lead.query("SELECT Id FROM Lead", wait=0))
    assert list(sf.bulk2.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0))


def test_bad_rules_are_refused(local_org: RunningOrg) -> None:
    status, body = local_org.admin("faults", {"kind": "meteor"})
    assert status == 400 and body[0]["errorCode"] == "INVALID_FAULT"  # type: ignore[index]


def test_probability_is_deterministic_with_a_seed() -> None:
    def fired(seed: int) -> list[bool]:
        faults = Faults(seed)
        faults.add({"kind": "http_500", "probability": 0.3})
        return [faults.take(("http_500",), "/services/data/v59.0/query") is not None for _ in range(1000)]

    first = fired(7)
    assert first == fired(7) and first != fired(8)
    assert 230 <= sum(first) <= 370  # 0.3 of 1000, more than 4.5 standard deviations either side


def test_probability_over_the_wire_is_statistically_bounded(
    sf: Salesforce, fault: Callable[..., dict], local_org: RunningOrg
) -> None:
    fault("http_503", route="/limits", probability=0.5)
    failures = 0
    for _ in range(200):
        try:
            sf.limits()
        except SalesforceGeneralError:
            failures += 1
    assert 60 <= failures <= 140  # binomial(200, 0.5): mean 100, standard deviation ~7
    _, listed = local_org.admin("faults", method="GET")
    assert listed["rules"][0]["fired"] == failures  # type: ignore[index]


def test_faults_cli(sf: Salesforce, local_org: RunningOrg) -> None:
    def cli(*args: str) -> dict:
        command = [sys.executable, "-m", "localorg", "admin", "--data", str(local_org.data_dir)]
        command += ["--port", str(local_org.port), "faults", *args]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    added = cli("add", "http_500", "--route", "/query", "--count", "1", "--message", "from the CLI")
    rule = added["rules"][0]
    assert (rule["kind"], rule["route"], rule["count"]) == ("http_500", "/query", 1)
    assert [r["id"] for r in cli("list")["rules"]] == [rule["id"]]
    with pytest.raises(SalesforceGeneralError, match="from the CLI"):
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert cli("list")["rules"] == []  # retired after its count
    cli("add", "latency", "--latency-ms", "1")
    assert cli("clear") == {"removed": 1}
