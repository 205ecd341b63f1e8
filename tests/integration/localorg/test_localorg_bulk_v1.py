"""Bulk API 1.0 query jobs (/services/async/XX.X/job), driven with the requests Singer's tap-salesforce sends
in BULK mode: a JSON job (X-SFDC-Session, Content-Type application/json, Sforce-Disable-Batch-Retry), a
batch of SOQL as text/csv, batch info and result lists read as XML, results read as CSV."""

from __future__ import annotations

import csv
import io
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from localorg.testing import RunningOrg
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration

NS = "{http://www.force.com/2009/06/asyncapi/dataload}"
FIELDS = "Id, FirstName, LastName, Company, Email, Title, HasOptedOutOfEmail, IsDeleted, CreatedDate, OwnerId"


def url(sf: Salesforce, path: str) -> str:
    return f"https://{sf.sf_instance}/services/async/59.0/{path}"


def headers(sf: Salesforce, content_type: str = "application/json", **extra: str) -> dict[str, str]:
    return {"X-SFDC-Session": sf.session_id, "Content-Type": content_type, **extra}


def xml(text: str) -> dict[str, str]:
    root = ET.fromstring(text)
    return {child.tag.removeprefix(NS): child.text or "" for child in root}


def create_job(sf: Salesforce, obj: str, operation: str = "queryAll", pk_chunking: str | None = None) -> str:
    extra = {"Sforce-Disable-Batch-Retry": "true"}
    if pk_chunking:
        extra["Sforce-Enable-PKChunking"] = pk_chunking
    body = {"operation": operation, "object": obj, "contentType": "CSV"}
    response = requests.post(url(sf, "job"), headers=headers(sf, **extra), data=json.dumps(body))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_batch(sf: Salesforce, job: str, soql: str) -> dict[str, str]:
    response = requests.post(url(sf, f"job/{job}/batch"), headers=headers(sf, "text/csv"), data=soql)
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"] == "application/xml"
    return xml(response.text)


def batch(sf: Salesforce, job: str, batch_id: str) -> dict[str, str]:
    response = requests.get(url(sf, f"job/{job}/batch/{batch_id}"), headers=headers(sf))
    assert response.status_code == 200, response.text
    return xml(response.text)


def batches(sf: Salesforce, job: str) -> list[dict[str, str]]:
    response = requests.get(url(sf, f"job/{job}/batch"), headers=headers(sf))
    root = ET.fromstring(response.text)
    assert root.tag == f"{NS}batchInfoList"
    return [{c.tag.removeprefix(NS): c.text or "" for c in info} for info in root]


def poll(sf: Salesforce, job: str, batch_id: str) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while (info := batch(sf, job, batch_id))["state"] not in ("Completed", "Failed", "NotProcessed"):
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    return info


def poll_all(sf: Salesforce, job: str) -> list[dict[str, str]]:
    """As tap-salesforce polls a PK-chunked job: until no batch is Queued or InProgress."""
    deadline = time.monotonic() + 60
    while True:
        listed = batches(sf, job)
        if not any(b["state"] in ("Queued", "InProgress") for b in listed):
            return listed
        assert time.monotonic() < deadline, listed
        time.sleep(0.2)


def results(sf: Salesforce, job: str, batch_id: str) -> list[dict[str, str]]:
    """As tap-salesforce reads them: the result-list XML, then each result's CSV, first row the header."""
    listing = requests.get(url(sf, f"job/{job}/batch/{batch_id}/result"), headers=headers(sf))
    assert listing.status_code == 200, listing.text
    ids = [r.text for r in ET.fromstring(listing.text) if r.tag == f"{NS}result"]
    assert len(ids) == 1
    rows: list[dict[str, str]] = []
    for result_id in ids:
        answer = requests.get(url(sf, f"job/{job}/batch/{batch_id}/result/{result_id}"), headers=headers(sf))
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/csv"
        reader = csv.reader(io.StringIO(answer.text))
        columns = next(reader)
        rows += [dict(zip(columns, line, strict=True)) for line in reader]
    return rows


def close(sf: Salesforce, job: str, state: str = "Closed") -> requests.Response:
    return requests.post(url(sf, f"job/{job}"), headers=headers(sf), data=json.dumps({"state": state}))


def run(sf: Salesforce, obj: str, soql: str, operation: str = "queryAll") -> list[dict[str, str]]:
    job = create_job(sf, obj, operation)
    batch_id = add_batch(sf, job, soql)["id"]
    close(sf, job)
    assert poll(sf, job, batch_id)["state"] == "Completed"
    return results(sf, job, batch_id)


def as_csv(value: Any) -> str:
    """A REST JSON value as Bulk CSV prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("+0000", "Z")


def test_json_job_end_to_end_matches_the_rest_query(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    for i in range(3):
        sf.Lead.create(lead(Company=company, LastName=f'Quote "{i}", Esq.', HasOptedOutOfEmail=i == 0))
    soql = f"SELECT {FIELDS} FROM Lead WHERE Company = '{company}'"

    created = requests.post(
        url(sf, "job"),
        headers=headers(sf, **{"Sforce-Disable-Batch-Retry": "true"}),
        data=json.dumps({"operation": "queryAll", "object": "Lead", "contentType": "CSV"}),
    )
    assert created.status_code == 201 and created.headers["Content-Type"] == "application/json"
    assert "Sforce-Limit-Info" in list(created.raw.headers.keys())  # spelled as Salesforce does
    job = created.json()
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert (job["operation"], job["object"], job["state"], job["contentType"]) == (
        "queryAll",
        "Lead",
        "Open",
        "CSV",
    )
    assert job["apiVersion"] == 59.0 and job["concurrencyMode"] == "Parallel"
    assert job["createdDate"].endswith("+0000") and job["numberBatchesTotal"] == 0

    added = add_batch(sf, job["id"], soql)
    assert added["state"] == "Queued" and added["jobId"] == job["id"] and added["id"].startswith("751")
    closed = close(sf, job["id"])
    assert closed.status_code == 200 and closed.json()["state"] == "Closed"
    info = poll(sf, job["id"], added["id"])
    assert info["state"] == "Completed" and info["numberRecordsProcessed"] == "3"
    assert info["createdDate"].endswith("Z") and "stateMessage" not in info

    rows = results(sf, job["id"], added["id"])
    rest = sf.query_all(soql)["records"]
    assert [r["Id"] for r in rows] == [r["Id"] for r in rest]
    for row, record in zip(rows, rest, strict=True):
        assert row == {name: as_csv(record[name]) for name in FIELDS.split(", ")}
    assert rows[0]["LastName"] == 'Quote "0", Esq.' and rows[0]["Title"] == ""

    status = requests.get(url(sf, f"job/{job['id']}"), headers=headers(sf)).json()
    assert status["numberBatchesCompleted"] == 1 and status["numberRecordsProcessed"] == 3

    nothing = create_job(sf, "Lead")
    empty = add_batch(sf, nothing, f"SELECT Id FROM Lead WHERE Company = '{unique()}'")["id"]
    assert poll(sf, nothing, empty)["numberRecordsProcessed"] == "0"
    result_id = ET.fromstring(
        requests.get(url(sf, f"job/{nothing}/batch/{empty}/result"), headers=headers(sf)).text
    )[0].text
    answer = requests.get(url(sf, f"job/{nothing}/batch/{empty}/result/{result_id}"), headers=headers(sf))
    assert answer.text == "Records not found for this query"


def test_xml_job(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    sf.Lead.create(lead(Company=company, LastName="Xml"))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
        "<operation>query</operation><object>Lead</object><concurrencyMode>Serial</concurrencyMode>"
        "<contentType>CSV</contentType></jobInfo>"
    )
    xml_headers = headers(sf, "application/xml; charset=UTF-8")
    created = requests.post(url(sf, "job"), headers=xml_headers, data=body)
    assert created.status_code == 201 and created.headers["Content-Type"] == "application/xml"
    job = xml(created.text)
    assert (job["operation"], job["state"], job["concurrencyMode"], job["apiVersion"]) == (
        "query",
        "Open",
        "Serial",
        "59.0",
    )
    assert job["createdDate"].endswith(".000Z") or job["createdDate"].endswith("Z")

    batch_id = add_batch(sf, job["id"], f"SELECT Id, LastName FROM Lead WHERE Company = '{company}'")["id"]
    assert poll(sf, job["id"], batch_id)["state"] == "Completed"
    assert [r["LastName"] for r in results(sf, job["id"], batch_id)] == ["Xml"]

    closing = body.split("<operation>")[0] + "<state>Closed</state></jobInfo>"
    closed = requests.post(url(sf, f"job/{job['id']}"), headers=xml_headers, data=closing)
    assert closed.status_code == 200 and xml(closed.text)["state"] == "Closed"
    status = xml(requests.get(url(sf, f"job/{job['id']}"), headers=xml_headers).text)
    assert status["numberBatchesCompleted"] == "1" and status["numberRecordsProcessed"] == "1"


def test_query_all_sees_deleted_rows(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    kept = sf.Lead.create(lead(Company=company))["id"]
    gone = sf.Lead.create(lead(Company=company))["id"]
    sf.Lead.delete(gone)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Company = '{company}'"
    assert run(sf, "Lead", soql, "query") == [{"Id": kept, "IsDeleted": "false"}]
    assert run(sf, "Lead", soql, "queryAll") == [
        {"Id": kept, "IsDeleted": "false"},
        {"Id": gone, "IsDeleted": "true"},
    ]


def test_pk_chunking_splits_the_batch_into_id_ranges(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    ids = [sf.Lead.create(lead(Company=company, LastName=f"Chunk{i}"))["id"] for i in range(7)]
    sf.Lead.delete(ids[3])  # a deleted row still counts in its chunk: queryAll returns it
    soql = f"SELECT Id, LastName FROM Lead WHERE Company = '{company}'"
    job = create_job(sf, "Lead", pk_chunking=f"true; chunkSize=3; startRow={ids[0]}")
    original = add_batch(sf, job, soql)
    assert original["state"] == "Queued"
    listed = poll_all(sf, job)
    assert listed[0]["id"] == original["id"] and listed[0]["state"] == "NotProcessed"
    chunks = listed[1:]
    assert len(chunks) == 3 and all(b["state"] == "Completed" for b in chunks)
    parts = [results(sf, job, b["id"]) for b in chunks]
    assert [len(p) for p in parts] == [3, 3, 1]
    rest = sf.query_all(soql, include_deleted=True)["records"]
    assert [r for part in parts for r in part] == [{"Id": r["Id"], "LastName": r["LastName"]} for r in rest]
    close(sf, job)

    whole = create_job(sf, "Lead", pk_chunking="true")  # default chunk: 100,000 rows, one batch here
    add_batch(sf, whole, soql)
    listed = poll_all(sf, whole)
    assert [b["state"] for b in listed] == ["NotProcessed", "Completed"]
    assert len(results(sf, whole, listed[1]["id"])) == 7


def test_pk_chunking_refusals(sf: Salesforce, unique: Callable[[], str]) -> None:
    too_big = requests.post(
        url(sf, "job"),
        headers=headers(sf, **{"Sforce-Enable-PKChunking": "chunkSize=250001"}),
        data=json.dumps({"operation": "query", "object": "Lead", "contentType": "CSV"}),
    )
    assert too_big.status_code == 400 and too_big.json()["exceptionCode"] == "InvalidJob"

    unsupported = create_job(sf, "OpportunityContactRole", pk_chunking="TRUE")
    failed = poll(sf, unsupported, add_batch(sf, unsupported, "SELECT Id FROM OpportunityContactRole")["id"])
    assert failed["state"] == "Failed" and "OpportunityContactRole" in failed["stateMessage"]
    ordered = create_job(sf, "Lead", pk_chunking="TRUE")
    failed = poll(sf, ordered, add_batch(sf, ordered, "SELECT Id FROM Lead ORDER BY Id")["id"])
    assert failed["state"] == "Failed" and failed["stateMessage"].startswith("InvalidBatch : ")
    assert len(batches(sf, ordered)) == 1


def test_invalid_session(sf: Salesforce) -> None:
    body = json.dumps({"operation": "query", "object": "Lead", "contentType": "CSV"})
    bogus = requests.post(
        url(sf, "job"), headers={"X-SFDC-Session": "nope", "Content-Type": "application/json"}, data=body
    )
    assert bogus.status_code == 400 and bogus.headers["Content-Type"] == "application/json"
    assert bogus.json() == {"exceptionCode": "InvalidSessionId", "exceptionMessage": "Invalid session id"}
    # Bulk API 1.0 reads the session from X-SFDC-Session only.
    bearer = requests.post(
        url(sf, "job"),
        headers={"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/xml"},
        data=body,
    )
    assert bearer.status_code == 400 and xml(bearer.text)["exceptionCode"] == "InvalidSessionId"
    assert ET.fromstring(bearer.text).tag == f"{NS}error"


def test_invalid_job_and_batch_ids(sf: Salesforce) -> None:
    missing = requests.get(url(sf, "job/750000000000000AAA"), headers=headers(sf))
    # tap-salesforce's job_exists: a 400 whose JSON exceptionCode is InvalidJob
    assert missing.status_code == 400 and missing.headers["Content-Type"] == "application/json"
    assert missing.json()["exceptionCode"] == "InvalidJob"
    job = create_job(sf, "Lead")
    unknown = requests.get(
        url(sf, f"job/{job}/batch/751000000000000AAA"), headers=headers(sf, "application/xml")
    )
    assert unknown.status_code == 400 and xml(unknown.text)["exceptionCode"] == "InvalidBatch"
    queued = add_batch(sf, job, "SELECT Id FROM Lead LIMIT 1")["id"]
    poll(sf, job, queued)
    wrong = requests.get(url(sf, f"job/{job}/batch/{queued}/result/752000000000000AAA"), headers=headers(sf))
    assert wrong.status_code == 400 and wrong.json()["exceptionCode"] == "InvalidBatch"


def test_bad_soql_fails_the_batch(sf: Salesforce) -> None:
    job = create_job(sf, "Lead")
    bad = add_batch(sf, job, "SELECT Id, Nope__c FROM Lead")
    assert bad["state"] == "Queued"  # the query is checked once the batch is processed
    failed = poll(sf, job, bad["id"])
    assert failed["state"] == "Failed"
    assert failed["stateMessage"].startswith("InvalidBatch : Failed to process query: INVALID_FIELD: ")
    assert "No such column 'Nope__c' on entity 'Lead'" in failed["stateMessage"]
    other = poll(sf, job, add_batch(sf, job, "SELECT Id FROM Contact")["id"])
    assert other["stateMessage"] == (
        "InvalidBatch : Failed to process query: INVALID_TYPE_FOR_OPERATION: The root entity of the "
        "requested query (Contact) does not match the entity of the requested Bulk API Job (Lead)."
    )
    accounts = create_job(sf, "Account")
    compound = poll(sf, accounts, add_batch(sf, accounts, "SELECT Id, BillingAddress FROM Account")["id"])
    assert compound["stateMessage"] == (
        "InvalidBatch : Failed to process query: FUNCTIONALITY_NOT_ENABLED: Selecting compound data not "
        "supported in Bulk Query"
    )
    listing = requests.get(url(sf, f"job/{job}/batch/{bad['id']}/result"), headers=headers(sf))
    assert listing.status_code == 400 and listing.json()["exceptionCode"] == "InvalidBatch"
    status = requests.get(url(sf, f"job/{job}"), headers=headers(sf)).json()
    assert status["numberBatchesFailed"] == 2


def test_field_level_security_and_sharing(
    sf: Salesforce, admin: Salesforce, hidden: Salesforce, unique: Callable[[], str]
) -> None:
    company = unique()
    mine = sf.Lead.create(lead(Company=company))["id"]
    theirs = hidden.Lead.create(lead(Company=company))["id"]
    soql = f"SELECT Id FROM Lead WHERE Company = '{company}'"
    assert run(sf, "Lead", soql) == [{"Id": mine}]
    assert run(admin, "Lead", soql) == [{"Id": mine}, {"Id": theirs}]
    job = create_job(sf, "Lead")
    failed = poll(sf, job, add_batch(sf, job, "SELECT Id, Internal_Rating__c FROM Lead")["id"])
    assert failed["state"] == "Failed" and "INVALID_FIELD" in failed["stateMessage"]
    assert run(admin, "Lead", f"SELECT Id, Internal_Rating__c FROM Lead WHERE Id = '{mine}'") == [
        {"Id": mine, "Internal_Rating__c": ""}
    ]
    # another user's job is not theirs to read
    foreign = requests.get(url(sf, f"job/{create_job(hidden, 'Lead')}"), headers=headers(sf))
    assert foreign.status_code == 400 and foreign.json()["exceptionCode"] == "InvalidUser"


def test_close_and_abort(sf: Salesforce) -> None:
    job = create_job(sf, "Lead")
    assert close(sf, job).json()["state"] == "Closed"
    late = requests.post(
        url(sf, f"job/{job}/batch"), headers=headers(sf, "text/csv"), data="SELECT Id FROM Lead"
    )
    assert late.status_code == 400 and xml(late.text)["exceptionCode"] == "InvalidJobState"  # text/csv: XML
    aborted = close(sf, job, "Aborted")
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    again = close(sf, job)
    assert again.status_code == 400 and again.json()["exceptionCode"] == "InvalidJobState"


def test_batches_count_in_limits_and_faults_fail_batches(sf: Salesforce, local_org: RunningOrg) -> None:
    def remaining() -> int:
        return int(sf.restful("limits")["DailyBulkApiBatches"]["Remaining"])

    before = remaining()
    job = create_job(sf, "Lead")
    poll(sf, job, add_batch(sf, job, "SELECT Id FROM Lead LIMIT 1")["id"])
    assert remaining() == before - 1

    status, _ = local_org.admin(
        "faults", {"kind": "bulk_job_failed", "route": "/services/async/", "count": 1}
    )
    assert status == 200
    try:
        failed = poll(sf, job, add_batch(sf, job, "SELECT Id FROM Lead LIMIT 1")["id"])
    finally:
        local_org.admin("faults", method="DELETE")
    assert (
        failed["state"] == "Failed"
        and failed["stateMessage"] == "InternalServerError : Internal server error"
    )
