"""The Composite resource: subrequests through the normal dispatch, references, allOrNone, one API call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration

V = "/services/data/v59.0"
HALTED = "The transaction was rolled back since another operation in the same transaction failed."


def composite(sf: Salesforce, subrequests: list[dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
    response = sf.restful("composite", method="POST", json={**options, "compositeRequest": subrequests})
    assert [r["referenceId"] for r in response["compositeResponse"]] == [
        s["referenceId"] for s in subrequests
    ]
    return response["compositeResponse"]


def _leads(sf: Salesforce, company: str, count: int) -> None:
    for start in range(0, count, 200):
        records = [
            {"attributes": {"type": "Lead"}, **lead(Company=company)} for _ in range(min(200, count - start))
        ]
        assert all(
            r["success"] for r in sf.restful("composite/sobjects", method="POST", json={"records": records})
        )


def test_describe_and_query_all_in_one_call_count_once(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    _leads(sf, company, 250)
    sf.restful("limits")
    used = sf.api_usage["api-usage"].used
    soql = f"SELECT Id FROM Lead WHERE Company = '{company}' ORDER BY Id".replace(" ", "+")
    describe, first, second, whole = composite(
        sf,
        [
            {"method": "GET", "url": f"{V}/sobjects/Lead/describe", "referenceId": "describe"},
            {
                "method": "GET",
                "url": f"{V}/queryAll?q={soql}",
                "referenceId": "page1",
                "httpHeaders": {"Sforce-Query-Options": "batchSize=200"},
            },
            {"method": "GET", "url": "@{page1.nextRecordsUrl}", "referenceId": "page2"},
            {"method": "GET", "url": f"{V}/queryAll?q={soql}", "referenceId": "whole"},
        ],
        allOrNone=False,
        collateSubrequests=False,
    )
    assert describe["httpStatusCode"] == 200 and describe["body"]["name"] == "Lead"
    # The subrequest's Sforce-Query-Options header is honoured; the one without it gets the default 2000.
    assert first["httpStatusCode"] == 200 and first["body"]["totalSize"] == 250
    assert (len(first["body"]["records"]), first["body"]["done"]) == (200, False)
    assert (len(second["body"]["records"]), second["body"]["done"]) == (50, True)
    assert (len(whole["body"]["records"]), whole["body"]["done"]) == (250, True)
    ids = [r["Id"] for r in first["body"]["records"] + second["body"]["records"]]
    assert ids == [r["Id"] for r in whole["body"]["records"]]
    # The whole composite request is one API call: the usage header and limits/ move by exactly one.
    assert sf.api_usage["api-usage"].used == used + 1
    remaining = sf.limits()["DailyApiRequests"]["Remaining"]
    assert sf.api_usage["api-usage"].used == used + 2 == 15000 - remaining  # limits/ counts itself


def test_create_then_reference_its_id(sf: Salesforce, unique: Callable[[], str]) -> None:
    name = unique()
    account, contact, read = composite(
        sf,
        [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acct", "body": {"Name": name}},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "contact",
                "body": {"LastName": name, "AccountId": "@{acct.id}"},
            },
            {
                "method": "GET",
                "url": f"{V}/sobjects/Contact/@{{contact.id}}?fields=AccountId,LastName",
                "referenceId": "read",
            },
        ],
    )
    assert account["httpStatusCode"] == 201 and account["body"]["success"] is True
    assert account["httpHeaders"]["Location"] == f"{V}/sobjects/Account/{account['body']['id']}"
    assert read["body"]["AccountId"] == account["body"]["id"]
    assert sf.Contact.get(contact["body"]["id"])["AccountId"] == account["body"]["id"]
    # A query result is addressed with [] and field names.
    found, updated = composite(
        sf,
        [
            {
                "method": "GET",
                "url": f"{V}/query?q=SELECT+Id+FROM+Account+WHERE+Name='{name}'",
                "referenceId": "q",
            },
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Account/@{{q.records[0].Id}}",
                "referenceId": "upd",
                "body": {"Description": "via composite"},
            },
        ],
    )
    assert (found["httpStatusCode"], updated["httpStatusCode"], updated["body"]) == (200, 204, None)
    assert sf.Account.get(account["body"]["id"])["Description"] == "via composite"


def test_failures_without_all_or_none_skip_only_dependents(sf: Salesforce, unique: Callable[[], str]) -> None:
    name = unique()
    bad, dependent, independent = composite(
        sf,
        [
            {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "bad", "body": {"Company": name}},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "dependent",
                "body": {"LastName": "@{bad.id}"},
            },
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "ok", "body": {"Name": name}},
        ],
        allOrNone=False,
    )
    assert bad["httpStatusCode"] == 400 and bad["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert dependent["httpStatusCode"] == 400 and dependent["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert dependent["body"][0]["message"].startswith("Invalid reference specified. No value for bad.id")
    assert independent["httpStatusCode"] == 201
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name = '{name}'")["totalSize"] == 1


def test_all_or_none_rolls_every_write_back(sf: Salesforce, unique: Callable[[], str]) -> None:
    name = unique()
    existing = sf.Lead.create(lead(Company=name))["id"]
    results = composite(
        sf,
        [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acct", "body": {"Name": name}},
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Lead/{existing}",
                "referenceId": "upd",
                "body": {"Title": "changed"},
            },
            {
                "method": "POST",
                "url": f"{V}/composite/sobjects",
                "referenceId": "many",
                "body": {
                    "allOrNone": False,
                    "records": [{"attributes": {"type": "Account"}, "Name": f"{name}-c"}],
                },
            },
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "bad",
                "body": {"FirstName": "x"},
            },
            {"method": "DELETE", "url": f"{V}/sobjects/Lead/{existing}", "referenceId": "after"},
        ],
        allOrNone=True,
    )
    acct, upd, many, bad, after = results
    assert (bad["httpStatusCode"], bad["body"][0]["errorCode"]) == (400, "REQUIRED_FIELD_MISSING")
    for other in (acct, upd, many, after):
        assert other["httpStatusCode"] == 400
        assert other["body"] == [{"errorCode": "PROCESSING_HALTED", "message": HALTED}]
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name LIKE '{name}%'")["totalSize"] == 0
    assert sf.Lead.get(existing)["Title"] is None
    # The same request without the failing subrequest commits everything.
    ok = composite(sf, _without_bad(name, existing), allOrNone=True)
    assert [r["httpStatusCode"] for r in ok] == [201, 204]
    assert sf.Lead.get(existing)["Title"] == "changed"


def _without_bad(name: str, existing: str) -> list[dict[str, Any]]:
    return [
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acct", "body": {"Name": name}},
        {
            "method": "PATCH",
            "url": f"{V}/sobjects/Lead/{existing}",
            "referenceId": "upd",
            "body": {"Title": "changed"},
        },
    ]


def test_subrequest_limits_and_unsupported_resources(sf: Salesforce) -> None:
    describe = {"method": "GET", "url": f"{V}/sobjects/Lead/describe"}
    assert len(composite(sf, [{**describe, "referenceId": f"r{i}"} for i in range(25)])) == 25
    with pytest.raises(SalesforceMalformedRequest) as caught:
        composite(sf, [{**describe, "referenceId": f"r{i}"} for i in range(26)])
    assert caught.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    query = {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Lead+LIMIT+1"}
    with pytest.raises(SalesforceMalformedRequest) as caught:
        composite(sf, [{**query, "referenceId": f"q{i}"} for i in range(6)])
    assert caught.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    for url in (f"{V}/jobs/query", f"{V}/composite", f"{V}/limits"):
        with pytest.raises(SalesforceMalformedRequest) as caught:
            composite(sf, [{"method": "POST", "url": url, "referenceId": "x", "body": {}}])
        assert caught.value.content[0]["errorCode"] == "INVALID_API_INPUT"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        composite(sf, [{"method": "GET", "url": f"{V}/sobjects/Lead/describe"}])
    assert caught.value.content == [
        {"message": "'referenceId' is a required field.", "errorCode": "JSON_PARSER_ERROR"}
    ]


def test_hidden_records_stay_hidden_through_composite(
    sf: Salesforce, hidden: Salesforce, unique: Callable[[], str]
) -> None:
    company = unique()
    secret = hidden.Lead.create(lead(Company=company))["id"]
    visible = sf.Lead.create(lead(Company=company))["id"]
    soql = f"SELECT Id FROM Lead WHERE Company = '{company}'".replace(" ", "+")
    query, retrieve, update = composite(
        sf,
        [
            {"method": "GET", "url": f"{V}/queryAll?q={soql}", "referenceId": "q"},
            {"method": "GET", "url": f"{V}/sobjects/Lead/{secret}", "referenceId": "get"},
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Lead/{secret}",
                "referenceId": "upd",
                "body": {"Title": "x"},
            },
        ],
    )
    assert [r["Id"] for r in query["body"]["records"]] == [visible]
    assert (retrieve["httpStatusCode"], retrieve["body"][0]["errorCode"]) == (404, "NOT_FOUND")
    assert update["httpStatusCode"] == 400
    assert update["body"][0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
