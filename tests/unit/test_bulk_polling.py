"""Bulk API 2.0 job polling: at once first, then a quarter of the job's running time, within bounds, and
never past a deadline."""

import pytest

from sfsync import salesforce
from sfsync.salesforce import BULK_JOB_DEADLINE, BULK_POLL_SECONDS, MAX_POLL_SECONDS, Salesforce


class Clock:
    """Time that passes only while the poller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Org:
    """Answers job status GETs: in progress until ``done_at`` seconds, then complete."""

    def __init__(self, clock: Clock, done_at: float) -> None:
        self.clock, self.done_at, self.polls = clock, done_at, []

    def restful(self, path: str, method: str = "GET", json: dict | None = None) -> dict:
        if method != "GET":
            self.polls.append((self.clock.now, f"{method} {path} {json}"))
            return {}
        self.polls.append((self.clock.now, path))
        return {"state": "JobComplete" if self.clock.now >= self.done_at else "InProgress"}


def poller(monkeypatch, done_at: float) -> Salesforce:
    clock = Clock()
    monkeypatch.setattr(salesforce.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(salesforce.time, "sleep", clock.sleep)
    sf = Salesforce.__new__(Salesforce)  # no login: only the client's status calls are needed
    sf.client = Org(clock, done_at)  # type: ignore[assignment]
    return sf


def poll(monkeypatch, done_at: float) -> tuple[Clock, Org]:
    sf = poller(monkeypatch, done_at)
    assert sf.wait_for_bulk_job("query", "750000000000001")["state"] == "JobComplete"
    return sf.client.clock, sf.client  # type: ignore[attr-defined, return-value]


def test_a_finished_job_costs_one_poll_and_no_wait(monkeypatch):
    clock, org = poll(monkeypatch, done_at=0)
    assert org.polls == [(0, "jobs/query/750000000000001")] and clock.sleeps == []


def test_waits_overshoot_the_end_by_at_most_a_quarter_and_stay_within_bounds(monkeypatch):
    for done_at in (0.1, 1.0, 7.3, 60.0, 600.0):
        clock, org = poll(monkeypatch, done_at)
        assert clock.sleeps[0] == BULK_POLL_SECONDS
        assert all(BULK_POLL_SECONDS <= s <= MAX_POLL_SECONDS for s in clock.sleeps)
        assert clock.now - done_at <= max(BULK_POLL_SECONDS, min(done_at / 4 + 1e-9, MAX_POLL_SECONDS))
    assert len(org.polls) < 140, "a ten-minute job polls every few seconds, not continuously"


def test_a_job_still_running_at_its_deadline_is_aborted_and_named(monkeypatch):
    sf = poller(monkeypatch, done_at=float("inf"))
    with pytest.raises(
        TimeoutError, match=f"Bulk query job 750000000000001 still InProgress after {BULK_JOB_DEADLINE}"
    ):
        sf.wait_for_bulk_job("query", "750000000000001")
    org: Org = sf.client  # type: ignore[assignment]
    assert org.polls[-1] == (org.clock.now, "PATCH jobs/query/750000000000001 {'state': 'Aborted'}")
    assert (
        BULK_JOB_DEADLINE.total_seconds()
        <= org.clock.now
        < BULK_JOB_DEADLINE.total_seconds() + MAX_POLL_SECONDS
    )
