"""Bulk ingest for the push, against a stand-in for the client: which records a job can carry, the CSV it
uploads, and an outcome for every record from as few result downloads as the job's counters allow."""

from __future__ import annotations

import csv
import io

import pytest

from sfsync.writeback import bulk

A, B, C = "00Q000000000001AAA", "00Q000000000002AAA", "00Q000000000003AAA"


class Org:
    """Answers ``bulk_ingest`` with ``job`` and result downloads with ``results``; keeps every call."""

    def __init__(self, job: dict, results: dict[str, str] | None = None) -> None:
        self.job, self.results = job, results or {}
        self.uploads: list[tuple[str, str, str, str | None]] = []
        self.downloads: list[str] = []

    def bulk_ingest(self, sobject: str, operation: str, data: str, external_id: str | None = None) -> dict:
        self.uploads.append((sobject, operation, data, external_id))
        return {"id": f"750{len(self.uploads)}"} | self.job

    def ingest_results(self, job_id: str, kind: str) -> str:
        self.downloads.append(kind)
        return self.results[kind]


def done(processed: int, failed: int = 0, state: str = "JobComplete", **more: str) -> dict:
    return {"state": state, "numberRecordsProcessed": processed, "numberRecordsFailed": failed, **more}


def updates(*ids: str) -> list[dict]:
    return [{"Id": i, "Title": f"Title {i[-4:]}"} for i in ids]


def test_records_over_bulks_limits_or_holding_its_null_go_by_rest():
    assert bulk.carries({"Id": A, "Title": "CEO", "NumberOfEmployees": 7, "Phone": None})
    assert not bulk.carries({"Id": A, "Title": "#N/A"}), "Bulk would write it as null"
    assert bulk.carries({"Id": A, "Description": "x" * bulk.MAX_FIELD_CHARS})
    assert not bulk.carries({"Id": A, "Description": "x" * (bulk.MAX_FIELD_CHARS + 1)})
    wide = {f"Field{n}__c": "x" * 100_000 for n in range(4)}
    assert bulk.carries(wide) and not bulk.carries(wide | {"Title": "x" * 100})


def test_the_csv_has_the_key_first_nulls_spelled_and_absent_fields_left_alone():
    records = [{"Id": A, "Title": None, "AnnualRevenue": 1e7}, {"Id": B, "Rating": "Hot"}]
    org = Org(done(2))
    bulk.run(org, "Lead", "update", records, "Id", {"AnnualRevenue": "numeric(18,2)"})  # type: ignore[arg-type]
    ((sobject, operation, data, external_id),) = org.uploads
    assert (sobject, operation, external_id) == ("Lead", "update", None)
    assert data == f"Id,AnnualRevenue,Rating,Title\n{A},10000000.0,,#N/A\n{B},,Hot,\n"


def test_a_clean_update_downloads_no_result():
    org = Org(done(3))
    outcomes = bulk.run(org, "Lead", "update", updates(A, B, C), "Id", {})  # type: ignore[arg-type]
    assert outcomes == {i: {"success": True, "id": i} for i in (A, B, C)}
    assert org.downloads == []


def test_failed_records_get_salesforces_error_and_the_rest_succeed():
    failed = f'"sf__Id","sf__Error",Id,Title\n"","FIELD_INTEGRITY_EXCEPTION:bad value:Title --",{B},x\n'
    org = Org(done(3, failed=1), {"failedResults": failed})
    outcomes = bulk.run(org, "Lead", "update", updates(A, B, C), "Id", {})  # type: ignore[arg-type]
    assert outcomes[B] == {
        "success": False,
        "errors": [{"statusCode": "FIELD_INTEGRITY_EXCEPTION", "message": "bad value", "fields": ["Title"]}],
    }
    assert outcomes[A] == outcomes[C] | {"id": A} == {"success": True, "id": A}
    assert org.downloads == ["failedResults"]


def test_upserts_get_their_new_ids_by_key_whatever_the_results_order():
    records = [{"Key__c": key, "LastName": key} for key in ("k1", "k2", "k3")]
    successes = f'"sf__Id","sf__Created",Key__c,LastName\n{C},true,k3,k3\n{A},true,k1,k1\n'
    org = Org(done(2), {"successfulResults": successes})
    outcomes = bulk.run(org, "Lead", "upsert", records, "Key__c", {})  # type: ignore[arg-type]
    assert org.uploads[0][3] == "Key__c" and org.downloads == ["successfulResults"]
    assert outcomes["k1"] == {"success": True, "id": A} and outcomes["k3"] == {"success": True, "id": C}
    assert outcomes["k2"]["errors"][0]["statusCode"] == "NOT_PROCESSED"


def test_a_job_that_stopped_early_reports_the_records_it_never_reached():
    successes = f'"sf__Id","sf__Created",Id,Title\n{A},false,{A},x\n'
    org = Org(
        done(1, state="Failed", errorMessage="InvalidBatch: too many locks"), {"successfulResults": successes}
    )
    outcomes = bulk.run(org, "Lead", "update", updates(A, B, C), "Id", {})  # type: ignore[arg-type]
    assert outcomes[A] == {"success": True, "id": A}
    not_processed = {"statusCode": "NOT_PROCESSED", "message": "InvalidBatch: too many locks", "fields": []}
    assert outcomes[B] == outcomes[C] == {"success": False, "errors": [not_processed]}
    assert org.downloads == ["successfulResults"]


def test_a_job_that_processed_nothing_downloads_nothing():
    org = Org(done(0, state="Aborted"))
    outcomes = bulk.run(org, "Lead", "delete", [{"Id": A}], "Id", {})  # type: ignore[arg-type]
    assert outcomes[A]["errors"][0] == {
        "statusCode": "NOT_PROCESSED",
        "message": "the Bulk job ended Aborted before this record",
        "fields": [],
    }
    assert org.downloads == []


@pytest.mark.parametrize("limit", [60, 120])
def test_an_upload_over_the_size_limit_is_split_into_jobs_each_record_once(monkeypatch, limit):
    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", limit)
    records = updates(*(f"00Q00000000000{n:04d}" for n in range(9)))
    org = Org(done(0))
    org.job = {"state": "JobComplete", "numberRecordsFailed": 0}  # processed is read per job below

    def bulk_ingest(sobject: str, operation: str, data: str, external_id: str | None = None) -> dict:
        org.uploads.append((sobject, operation, data, external_id))
        return {"id": "750", **done(data.count("\n") - 1)}

    org.bulk_ingest = bulk_ingest  # type: ignore[method-assign]
    outcomes = bulk.run(org, "Lead", "update", records, "Id", {})  # type: ignore[arg-type]
    sent = [row["Id"] for *_, data, _ in org.uploads for row in csv.DictReader(io.StringIO(data))]
    assert sorted(sent) == sorted(r["Id"] for r in records) and len(org.uploads) > 1
    assert all(len(data.encode()) <= limit for *_, data, _ in org.uploads)
    assert all(outcome["success"] for outcome in outcomes.values()) and len(outcomes) == 9
