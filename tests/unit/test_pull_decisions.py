"""The pull's decisions, without services: the window, new fields, the first question asked, REST or Bulk,
the budget guard's verdict, and COPY straight in or stage and merge."""

import contextlib
import datetime as dt

import psycopg
import pytest

from sfsync import budget, load
from sfsync.extract import _first_question, new_fields, source, start_of_window
from sfsync.registry import SyncObject, SyncSettings
from sfsync.salesforce import BulkResults
from sfsync.state import Usage

LEAD = SyncObject(sobject="Lead", direction="bidirectional", bulk_threshold=100)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_a_window_starts_a_lookback_before_the_watermark_and_a_first_run_reads_everything():
    settings = SyncSettings(lookback_seconds=300)
    assert start_of_window(T0, settings) == T0 - dt.timedelta(minutes=5)
    assert start_of_window(None, settings) is None


def test_new_fields_are_those_the_last_merged_run_did_not_read():
    assert new_fields(["Id", "Email"], ["Id", "Email", "Rating"], T0) == ["Rating"]
    assert new_fields(["Id", "Email"], ["Id"], T0) == [], "a field gone is not new"
    assert new_fields(None, ["Id", "Email"], T0) == [], "no field list yet: nothing to compare"
    assert new_fields(["Id"], ["Id", "Email"], None) == [], "a run reading everything reads them anyway"


def test_the_usual_run_asks_its_delta_and_a_first_run_a_count_capped_above_the_bulk_threshold():
    usual = _first_question(LEAD, ["Id", "Email"], T0, T0 + dt.timedelta(minutes=5))
    assert usual.startswith("SELECT Id, Email FROM Lead WHERE SystemModstamp >= 2026-03-01T12:00:00.000Z")
    first = _first_question(LEAD, None, None, T0)
    assert first == "SELECT COUNT() FROM Lead WHERE SystemModstamp < 2026-03-01T12:00:00.000Z LIMIT 101"
    assert _first_question(LEAD, ["Id"], None, T0) == first, "a run reading everything again counts first"


class Client:
    """Answers the first REST page with ``total`` records (or a COUNT() of them) and keeps every call."""

    def __init__(self, total: int, counted: bool = False) -> None:
        self.total, self.counted, self.calls = total, counted, []

    def page(self, first: bool) -> dict:
        records = [] if self.counted and first else [{"Id": f"00Q{i}"} for i in range(min(self.total, 2))]
        return {"totalSize": self.total, "done": True, "records": records}

    def query_pages(self, query, page_size, first=None):
        self.calls.append(("rest", first is not None))
        yield first or self.page(first=False)

    def bulk_query(self, query):
        self.calls.append(("bulk", query))
        return BulkResults(self, "750X", records=self.total)


@pytest.mark.parametrize(("total", "kind"), [(0, "rest"), (100, "rest"), (101, "bulk")])
def test_a_result_above_the_bulk_threshold_goes_through_bulk(total, kind):
    client = Client(total)
    found = source(client, LEAD, "SELECT Id FROM Lead")
    assert isinstance(found, BulkResults) == (kind == "bulk")
    if kind == "rest":
        assert len(list(found)[0]["records"]) == min(total, 2)
        assert client.calls == [("rest", False), ("rest", True)], "the first page fetched once, then reused"


def test_a_count_already_asked_decides_without_another_call_and_is_not_taken_for_a_page():
    client = Client(50, counted=True)
    count = client.page(first=True)
    pages = list(source(client, LEAD, "SELECT Id FROM Lead", count))
    assert client.calls == [("rest", False)], "the records are read: a COUNT() page holds none"
    assert len(pages[0]["records"]) == 2
    bulk = Client(5000, counted=True)
    assert isinstance(source(bulk, LEAD, "SELECT Id FROM Lead", bulk.page(first=True)), BulkResults)
    assert [kind for kind, _ in bulk.calls] == ["bulk"]


@pytest.mark.parametrize(
    ("used", "limit", "age", "verdict"),
    [
        (0, 0, 0, budget.Verdict(False, False)),  # no limit reported
        (79, 100, 0, budget.Verdict(False, False)),
        (80, 100, 0, budget.Verdict(True, False)),  # at the share: held back, the reading trusted
        (95, 100, 59, budget.Verdict(True, False)),
        (95, 100, 60, budget.Verdict(True, True)),  # stale: read again
    ],
)
def test_the_budget_guard_holds_back_at_its_share_and_reads_a_stale_reading_again(used, limit, age, verdict):
    assert budget.judge(Usage(used, limit, dt.timedelta(seconds=age)), 0.8) == verdict
    assert budget.judge(None, 0.8) == budget.Verdict(False, False), "no reading yet"


class Conn:
    @contextlib.contextmanager
    def transaction(self):
        yield


@pytest.mark.parametrize(
    ("straight", "waiting", "collides", "expected"),
    [
        (True, False, False, ["read", "copy_new"]),
        (True, False, True, ["read", "copy_new", "create_staging", "read", "copy_csv", "merge_into"]),
        (True, True, False, ["create_staging", "read", "copy_csv", "merge_into"]),  # rows await their Ids
        (False, False, False, ["create_staging", "read", "copy_csv", "merge_into"]),
    ],
)
def test_bulk_pages_go_straight_in_only_where_none_of_their_records_can_be_there(
    monkeypatch, straight, waiting, collides, expected
):
    steps = []

    def copy_new(conn, table, names, pages, exclusive):
        steps.append("copy_new")
        if collides:
            raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
        return {"new": 3, "updated": 0, "deleted": 0, "skipped": 0}

    monkeypatch.setattr(load.warehouse_key, "waiting", lambda conn, table: waiting)
    monkeypatch.setattr(load, "copy_new", copy_new)
    monkeypatch.setattr(load, "create_staging", lambda *args: steps.append("create_staging"))
    monkeypatch.setattr(load, "copy_csv", lambda *args: steps.append("copy_csv"))
    merged = {"new": 1, "updated": 2, "deleted": 0, "skipped": 0}
    monkeypatch.setattr(load, "merge_into", lambda *args: steps.append("merge_into") or merged)
    finished = []
    result = load.copy_or_merge(
        Conn(), LEAD, "warehouse_id__c", ["id"], lambda: steps.append("read") or [], "stage__x",
        lambda counters: finished.append(counters) or "done", straight=straight,
    )  # fmt: skip
    assert (result, steps) == ("done", expected)
    assert finished == [
        merged if "merge_into" in expected else {"new": 3, "updated": 0, "deleted": 0, "skipped": 0}
    ]
