"""Bulk API 2.0 query and ingest jobs through the real simple-salesforce client (sf.bulk2)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceOperationError

from localorg import bulk
from localorg.bulk import BulkJobs
from localorg.orgdef import load_org
from localorg.query import QueryEngine
from localorg.schema import format_datetime
from localorg.seed import Seeder
from localorg.server import create_app
from localorg.store import Org
from localorg.testing import RunningOrg, running_org
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration

#: 30 stored Lead fields the integration user can see (as bench/common.py's LEAD_FIELDS).
LEAD_FIELDS = (
    "Id IsDeleted Salutation FirstName LastName Title Company Email Phone MobilePhone Website City State"
    " PostalCode Country Status LeadSource Industry Rating AnnualRevenue NumberOfEmployees HasOptedOutOfEmail"
    " DoNotCall OwnerId CreatedDate CreatedById LastModifiedDate LastModifiedById SystemModstamp IsConverted"
).split()


def rows(pages: list[str]) -> list[dict[str, str]]:
    return [row for page in pages for row in csv.DictReader(io.StringIO(page))]


def raw(sf: Salesforce, method: str, path: str, **kw: object) -> requests.Response:
    url = f"{sf.base_url}{path}"
    return requests.request(method, url, headers={"Authorization": f"Bearer {sf.session_id}"}, **kw)


def test_query_pages_with_locator_and_csv_format(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    account = sf.Account.create({"Name": f"Bulk {company}"})["id"]
    for i in range(5):
        sf.Lead.create(lead(Company=company, LastName=f'Quote "{i}", Esq.', HasOptedOutOfEmail=i == 0))
    sf.Contact.create({"LastName": company, "AccountId": account})
    soql = (
        f"SELECT Id, LastName, HasOptedOutOfEmail, CreatedDate, Title FROM Lead WHERE Company = '{company}'"
    )
    pages = list(sf.bulk2.Lead.query(soql, max_records=2, wait=0))
    assert len(pages) == 3  # 2 + 2 + 1: the last page answers Sforce-Locator: null
    assert pages[0].splitlines()[0] == '"Id","LastName","HasOptedOutOfEmail","CreatedDate","Title"'
    records = rows(pages)
    assert [r["LastName"] for r in records] == [f'Quote "{i}", Esq.' for i in range(5)]
    assert [r["HasOptedOutOfEmail"] for r in records] == ["true", "false", "false", "false", "false"]
    assert records[0]["Title"] == ""  # null is an empty field
    assert records[0]["CreatedDate"].endswith("Z") and len(records[0]["CreatedDate"]) == 24
    line = pages[0].splitlines()[1]
    assert line.startswith('"00Q') and line.endswith('",')  # values quoted, the null title empty
    parent = rows(
        list(sf.bulk2.Contact.query(f"SELECT Account.Name FROM Contact WHERE LastName = '{company}'", wait=0))
    )
    assert parent == [{"Account.Name": f"Bulk {company}"}]


def test_query_all_visibility_and_unsupported_soql(
    sf: Salesforce, hidden: Salesforce, unique: Callable[[], str]
) -> None:
    company = unique()
    mine = sf.Lead.create(lead(Company=company))["id"]
    gone = sf.Lead.create(lead(Company=company))["id"]
    hidden.Lead.create(lead(Company=company))
    sf.Lead.delete(gone)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Company = '{company}'"
    assert {r["Id"] for r in rows(list(sf.bulk2.Lead.query(soql, wait=0)))} == {mine}
    every = rows(list(sf.bulk2.Lead.query_all(soql, wait=0)))
    assert {(r["Id"], r["IsDeleted"]) for r in every} == {(mine, "false"), (gone, "true")}
    for bad, code in [
        ("SELECT COUNT() FROM Lead", "INVALIDJOB"),
        ("SELECT Id FROM Lead OFFSET 5", "INVALIDJOB"),
        ("SELECT Internal_Rating__c FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM", "MALFORMED_QUERY"),
    ]:
        response = raw(sf, "POST", "jobs/query", json={"operation": "query", "query": bad})
        assert (response.status_code, response.json()[0]["errorCode"]) == (400, code), bad


def test_query_job_lifecycle_delimiters_and_download(
    sf: Salesforce, tmp_path: Path, unique: Callable[[], str]
) -> None:
    company = unique()
    for i in range(3):
        sf.Lead.create(lead(Company=company, FirstName=f"F{i}"))
    soql = f"SELECT FirstName, Company FROM Lead WHERE Company = '{company}'"
    job = raw(
        sf,
        "POST",
        "jobs/query",
        json={"operation": "query", "query": soql, "columnDelimiter": "SEMICOLON", "lineEnding": "CRLF"},
    ).json()
    assert job["state"] == "UploadComplete" and job["id"].startswith("750")
    sf.bulk2.Lead._client.wait_for_job(job["id"], True, 0)
    info = raw(sf, "GET", f"jobs/query/{job['id']}").json()
    assert (info["state"], info["numberRecordsProcessed"], info["jobType"]) == ("JobComplete", 3, "V2Query")
    page = raw(sf, "GET", f"jobs/query/{job['id']}/results", params={"maxRecords": 2})
    assert page.headers["Sforce-NumberOfRecords"] == "2" and page.headers["Sforce-Locator"] != "null"
    assert page.text.startswith('"FirstName";"Company"\r\n"F0";')
    last = raw(
        sf, "GET", f"jobs/query/{job['id']}/results", params={"locator": page.headers["Sforce-Locator"]}
    )
    assert (last.headers["Sforce-NumberOfRecords"], last.headers["Sforce-Locator"]) == ("1", "null")
    assert job["id"] in {j["id"] for j in raw(sf, "GET", "jobs/query").json()["records"]}
    aborted = raw(sf, "PATCH", f"jobs/query/{job['id']}", json={"state": "Aborted"})
    assert (aborted.status_code, aborted.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert raw(sf, "DELETE", f"jobs/query/{job['id']}").status_code == 204
    assert raw(sf, "GET", f"jobs/query/{job['id']}").status_code == 404
    results = sf.bulk2.Lead.download(soql, str(tmp_path), max_records=2, wait=0)
    assert [r["number_of_records"] for r in results] == [2, 1]
    assert sum(len(rows([Path(r["file"]).read_text()])) for r in results) == 3


def test_ingest_insert_reports_successes_and_failures(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    records = [
        {"LastName": "Good", "Company": company, "Email": "good@example.com", "DoNotCall": "true"},
        {"LastName": "", "Company": company, "Email": "nolast@example.com", "DoNotCall": "false"},
        {"LastName": "BadMail", "Company": company, "Email": "nope", "DoNotCall": ""},
    ]
    [summary] = sf.bulk2.Lead.insert(records=records, wait=0)
    assert (summary["numberRecordsProcessed"], summary["numberRecordsFailed"]) == (3, 1 + 1)
    results = sf.bulk2.Lead.get_all_ingest_records(summary["job_id"])
    [ok] = results["successfulRecords"]
    assert ok["sf__Created"] == "true" and ok["LastName"] == "Good"
    assert sf.Lead.get(ok["sf__Id"])["DoNotCall"] is True
    errors = {r["Email"]: r["sf__Error"] for r in results["failedRecords"]}
    assert (
        errors["nolast@example.com"]
        == "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    )
    assert errors["nope"].startswith("INVALID_EMAIL_ADDRESS:")
    assert results["unprocessedRecords"] == []


def test_ingest_update_upsert_delete(sf: Salesforce, unique: Callable[[], str]) -> None:
    key, company = unique(), unique()
    [created] = sf.bulk2.Lead.upsert(
        records=[{**lead(Company=company), "Warehouse_Id__c": key, "Title": "CTO"}],
        external_id_field="Warehouse_Id__c",
        wait=0,
    )
    record = sf.Lead.get_by_custom_id("Warehouse_Id__c", key)
    sf.bulk2.Lead.upsert(
        records=[{"Warehouse_Id__c": key, "City": "Oslo"}], external_id_field="Warehouse_Id__c", wait=0
    )
    # An empty field leaves the value alone; #N/A sets it to null.
    sf.bulk2.Lead.update(records=[{"Id": record["Id"], "Title": "#N/A", "City": ""}], wait=0)
    after = sf.Lead.get(record["Id"])
    assert (after["Title"], after["City"]) == (None, "Oslo")
    [deleted] = sf.bulk2.Lead.delete(records=[{"Id": record["Id"]}, {"Id": "00Q8c0000009999"}], wait=0)
    assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (2, 1)
    assert created["numberRecordsFailed"] == 0
    assert (
        sf.query_all(f"SELECT IsDeleted FROM Lead WHERE Id = '{record['Id']}'", include_deleted=True)[
            "records"
        ][0]["IsDeleted"]
        is True
    )


def test_hard_delete_needs_the_permission(
    sf: Salesforce, admin: Salesforce, unique: Callable[[], str]
) -> None:
    record = sf.Lead.create(lead(Company=unique()))["id"]
    refused = raw(sf, "POST", "jobs/ingest", json={"object": "Lead", "operation": "hardDelete"})
    assert (refused.status_code, refused.json()[0]["errorCode"]) == (400, "FEATURENOTENABLED")
    [result] = admin.bulk2.Lead.hard_delete(records=[{"Id": record}], wait=0)
    assert result["numberRecordsFailed"] == 0
    assert sf.query_all(f"SELECT Id FROM Lead WHERE Id = '{record}'", include_deleted=True)["totalSize"] == 0


def test_ingest_job_protocol_errors(sf: Salesforce) -> None:
    job = raw(sf, "POST", "jobs/ingest", json={"object": "Lead", "operation": "insert"}).json()
    assert job["state"] == "Open"
    url = f"jobs/ingest/{job['id']}/batches"
    data = "LastName,Company,Email,Bogus__c\nX,Y,x@example.com,1\n"
    assert raw(sf, "PUT", url, data=data).status_code == 201
    again = raw(sf, "PUT", url, data=data)
    assert again.json()[0]["errorCode"] == "BULK_API_ERROR"
    raw(sf, "PATCH", f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    with pytest.raises(SalesforceOperationError, match="InvalidBatch : Field name not found : Bogus__c"):
        sf.bulk2.Lead._client.wait_for_job(job["id"], False, 0)
    unprocessed = raw(sf, "GET", f"jobs/ingest/{job['id']}/unprocessedRecords").text
    assert unprocessed == data
    missing = raw(sf, "POST", "jobs/ingest", json={"object": "Nope__c", "operation": "insert"})
    assert missing.json()[0]["errorCode"] == "INVALIDJOB"


def test_rest_and_bulk_counts_agree(sf: Salesforce, local_org: RunningOrg, unique: Callable[[], str]) -> None:
    company = unique()
    sf.bulk2.Lead.insert(records=[lead(Company=company, LastName=f"N{i}") for i in range(450)], wait=0)
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Company = '{company}'")["totalSize"] == 450
    pages = list(
        sf.bulk2.Lead.query(f"SELECT Id FROM Lead WHERE Company = '{company}'", max_records=200, wait=0)
    )
    assert [len(p.splitlines()) - 1 for p in pages] == [200, 200, 50]


def _as_csv(value: object) -> str:
    """A REST (JSON) value as Bulk CSV prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.endswith("+0000"):
        return value.removesuffix("+0000") + "Z"  # a datetime
    return str(value)


def _same(csv_value: str, rest_value: object) -> bool:
    if isinstance(rest_value, float | int) and not isinstance(rest_value, bool):
        return float(csv_value) == rest_value
    return csv_value == _as_csv(rest_value)


def test_large_job_equals_the_rest_query_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result large enough to be spooled in slices reads exactly as REST's, in order, page by page."""
    org = Org(tmp_path / "big", load_org())
    Seeder(org, seed=7).leads(28_000)  # owners in every role: the integration user sees most of them
    awkward = [
        'Say "hi", then, leave',
        "two\nlines",
        "crlf\r\nline",
        'ends with a quote"',
        "Ünïcödé ✓ 日本",
        " spaced ",
        ",",
        '"',
    ]
    org.seed(
        "Lead",
        [
            lead(LastName=text, Company=text, Title=None if i % 2 else text, Description=text)
            for i, text in enumerate(awkward * 3)
        ],
        owner="integration@localorg.test",
    )
    fields = [*LEAD_FIELDS, "Description", "Lead_Score__c", "Interests__c", "ConvertedAccount.Name"]
    with running_org(tmp_path / "big") as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_file))
        sf = Salesforce(**running.salesforce_kwargs("integration"))
        admin = Salesforce(**running.salesforce_kwargs("admin"))
        first = sf.query("SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id LIMIT 3")["records"]
        account = admin.Account.create({"Name": 'Converted "Co", Ltd'})["id"]
        status, _ = running.admin("convert-lead", {"leadId": first[0]["Id"], "accountId": account})
        assert status == 200
        sf.Lead.delete(first[1]["Id"])  # queryAll returns it, flagged
        window = (
            f"SELECT {', '.join(fields)} FROM Lead WHERE SystemModstamp < 2100-01-01T00:00:00Z"
            " ORDER BY SystemModstamp, Id"
        )
        results = {}
        for soql in (window, f"SELECT {', '.join(fields)} FROM Lead ORDER BY LastName DESC LIMIT 5000"):
            expected = sf.query_all(soql, include_deleted=True)["records"]
            pages = list(sf.bulk2.Lead.query_all(soql, max_records=7_777, wait=0))
            assert all(page.startswith('"Id","IsDeleted",') for page in pages)
            got = results[soql] = rows(pages)
            assert len(got) == len(expected) >= 5_000
            for row, record in zip(got, expected, strict=True):
                for name in fields:
                    parent, _, child = name.partition(".")
                    value = (record[parent] or {}).get(child) if child else record[name]
                    assert _same(row[name], value), (name, row[name], value)
    assert len(results[window]) > 20_000  # spooled in slices: more than twice bulk._SLICE_ROWS rows
    assert any((tmp_path / "big" / "bulk").glob("*/result-1.csv"))
    by_id = {r["Id"]: r for r in results[window]}
    assert by_id[first[1]["Id"]]["IsDeleted"] == "true"
    assert by_id[first[0]["Id"]]["ConvertedAccount.Name"] == 'Converted "Co", Ltd'
    assert by_id[first[2]["Id"]]["ConvertedAccount.Name"] == ""
    assert {r["LastName"] for r in by_id.values()} >= set(awkward)


def test_a_range_job_reads_its_own_rows_not_the_table(tmp_path: Path) -> None:
    """A CreatedDate slice of a large table is read through the CreatedDate index and sorts no CSV line.

    A sampled ANALYZE read only the first thousand entries of the OwnerId index (one owner's), so it reported
    about a thousand rows per owner: the planner took the integration user's visibility test for the most
    selective condition and read every job's rows through the OwnerId index, a slice of 1/40 of the table
    costing as much as the whole table, and sorted the formatted lines in one slice.
    """
    org = Org(tmp_path / "org", load_org())
    owners = sorted(u.id for u in org.users.values())
    total, day, start = 250_000, 86_400_000, 1_735_689_600_000  # a year of Leads from 2025-01-01
    conn = org.conn()
    conn.execute("BEGIN")
    conn.execute(
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total})
        INSERT INTO "Lead" (rowid, "Id", "OwnerId", "LastName", "Company", "Status", "CreatedDate",
            "LastModifiedDate", "SystemModstamp")
        SELECT i, printf('00Q8c%013dAAA', i), json_extract(?, printf('$[%d]', i % ?)), 'L' || i, 'C', 'Open',
            ? + (i * 7919) % 365 * ? + i % 86400 * 1000, ? + i * 1000, ? + i * 1000 FROM n""",
        [json.dumps(owners), len(owners), start, day, start, start],
    )
    conn.execute("COMMIT")
    org = Org(tmp_path / "org", load_org())  # statistics as a server start leaves them
    conn = org.conn()
    stat = conn.execute("SELECT stat FROM sqlite_stat1 WHERE idx = 'Lead_OwnerId'").fetchone()[0]
    assert int(stat.split()[1]) > total // len(owners) // 2  # rows per owner, not per sampled entry

    user = org.users["integration@localorg.test"]
    since = start + 100 * day
    soql = (
        "SELECT Id, LastName, OwnerId, CreatedDate FROM Lead WHERE CreatedDate >= "
        f"{format_datetime(since)[:19]}Z AND CreatedDate < {format_datetime(since + 9 * day)[:19]}Z"
    )
    plan = QueryEngine(org).compile(user, soql, True)
    _, sql, params = plan.csv(",")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    lines = [
        row[0]
        for read_sql, read_params in BulkJobs._reads(conn, plan, ",", sql, params)
        for row in conn.execute(read_sql, read_params)
    ]
    conn.set_trace_callback(None)
    expected = conn.execute(
        f'SELECT COUNT(*) FROM "Lead" WHERE "CreatedDate" >= ? AND "CreatedDate" < ? AND "OwnerId" IN '
        f"({', '.join('?' * len(plan.where_params[2:]))})",
        [since, since + 9 * day, *plan.where_params[2:]],
    ).fetchone()[0]
    assert len(lines) == expected > 4_000  # in the order of a fortieth of the table
    reading = [s for s in statements if '"Lead" t' in s and not s.startswith("EXPLAIN")]
    assert len(reading) >= 2  # the result's rowids, then the CSV lines of (slices of) them
    for statement in reading:
        steps = [step[-1] for step in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
        assert any("USING INDEX Lead_CreatedDate" in s or "INTEGER PRIMARY KEY (rowid=?)" in s for s in steps)
        assert not any("Lead_OwnerId" in s or s == "SCAN t" for s in steps), steps
        if "json_each" in statement:
            assert not any("TEMP B-TREE" in s for s in steps), steps  # lines come in their rowids' order


def test_a_result_ordered_by_an_indexed_field_is_read_in_ranges_of_it(tmp_path: Path) -> None:
    """A delta's order (SystemModstamp, Id) comes from its index: the slices are ranges of SystemModstamp,
    each reading its own rows, and together they are the single statement's lines, in its order, even where
    thousands of records share the stamp a range starts at, or (ConvertedAccountId) have none."""
    org = Org(tmp_path / "org", load_org())
    owners = sorted(u.id for u in org.users.values())
    total, start = 60_000, 1_735_689_600_000
    conn = org.conn()
    conn.execute("BEGIN")
    conn.execute(
        f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total})
        INSERT INTO "Lead" (rowid, "Id", "OwnerId", "LastName", "Company", "Status", "CreatedDate",
            "LastModifiedDate", "SystemModstamp", "ConvertedAccountId")
        SELECT i, printf('00Q8c%013dAAA', i), json_extract(?, printf('$[%d]', i % ?)), 'L' || i, 'C', 'Open',
            ?, ?, ? + (i * 7919) % 5 * 1000, CASE WHEN i % 3 > 0 THEN printf('0018c%013dAAA', i % 7) END
        FROM n""",
        [json.dumps(owners), len(owners), start, start, start],
    )
    conn.execute("COMMIT")
    org = Org(tmp_path / "org", load_org())
    conn = org.conn()
    user = org.users["integration@localorg.test"]
    for order in ("SystemModstamp, Id", "ConvertedAccountId, Id"):
        soql = f"SELECT Id, SystemModstamp, ConvertedAccountId FROM Lead ORDER BY {order}"
        plan = QueryEngine(org).compile(user, soql, True)
        _, sql, params = plan.csv(",")
        whole = [row[0] for row in conn.execute(sql, params)]
        reads = BulkJobs._reads(conn, plan, ",", sql, params)
        assert len(reads) > 1 and all(f"{plan.leading} >= ?" in s or "IS NULL" in s for s, _ in reads)
        sliced = [row[0] for read_sql, read_params in reads for row in conn.execute(read_sql, read_params)]
        assert sliced == whole and len(whole) > total // 2, order


def test_held_status_polls_take_no_request_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running job's status polls wait on the event loop: more of them than the threads that run requests
    (anyio's 40) leave every other request answered at once. Each answers when the job ends; a job that
    does not end is answered after the hold, with its state then, in the same JSON as a final answer."""
    org = Org(tmp_path / "org", load_org())
    app = create_app(org, 3600, 1_000_000)
    api = app.routes[0].endpoint.__self__  # type: ignore[attr-defined]
    release = threading.Event()
    run_query = api.bulk._run_query
    monkeypatch.setattr(api.bulk, "_run_query", lambda job: release.wait(60) and run_query(job))
    token = api.sessions.create(org.users["integration@localorg.test"])
    base = "/services/data/v59.0"

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://localorg.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            created = await client.post(
                f"{base}/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"}
            )
            url = f"{base}/jobs/query/{created.json()['id']}"
            job = api.bulk.get(org.users["integration@localorg.test"], "query", created.json()["id"])
            monkeypatch.setattr(bulk, "STATUS_HOLD_SECONDS", 0.1)
            unfinished = await client.get(url)
            assert unfinished.status_code == 200 and unfinished.json()["state"] in (
                "UploadComplete",
                "InProgress",
            )
            monkeypatch.setattr(bulk, "STATUS_HOLD_SECONDS", 600)
            polls = [asyncio.create_task(client.get(url)) for _ in range(60)]
            for _ in range(1000):
                if len(job.wakers) == len(polls):
                    break
                await asyncio.sleep(0.01)
            assert len(job.wakers) == len(polls)  # every poll held at once, not 40 at a time
            limits = await client.get(f"{base}/limits")
            assert limits.status_code == 200 and not any(poll.done() for poll in polls)
            release.set()
            answers = await asyncio.gather(*polls)
            assert {(a.status_code, a.json()["state"]) for a in answers} == {(200, "JobComplete")}
            assert answers[0].json().keys() == unfinished.json().keys()
            assert answers[0].headers["Sforce-Limit-Info"].startswith("api-usage=")
            assert not job.wakers

    try:
        asyncio.run(scenario())
    finally:
        release.set()
