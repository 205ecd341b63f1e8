"""SOQL through the REST query endpoints: operators, relationships, ordering, paging and errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from localorg.soql import parse
from localorg.store import Org
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tagged(sf: Salesforce) -> str:
    """Five leads sharing a Company tag, created once for this module."""
    tag = "QueryCo"
    rows = [
        lead(Company=tag, LastName="Alpha", AnnualRevenue=100, Rating="Hot", Email="a@x.com"),
        lead(Company=tag, LastName="beta", AnnualRevenue=200, Rating="Warm", Email="b@x.com"),
        lead(Company=tag, LastName="Gamma", AnnualRevenue=None, Rating=None, Email=None, Phone="555"),
        lead(Company=tag, LastName="O'Brien", AnnualRevenue=300, Rating="Cold", Email="o@x.com"),
        lead(Company=tag, LastName="Under_score", AnnualRevenue=400, Rating="Hot", Email="u@x.com"),
    ]
    sf.restful(
        "composite/sobjects",
        method="POST",
        json={"allOrNone": True, "records": [{"attributes": {"type": "Lead"}, **r} for r in rows]},
    )
    return tag


def names(sf: Salesforce, where: str, order: str = "LastName") -> list[str]:
    result = sf.query_all(
        f"SELECT LastName FROM Lead WHERE Company = 'QueryCo' AND ({where}) ORDER BY {order}"
    )
    return [r["LastName"] for r in result["records"]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("AnnualRevenue > 150", ["beta", "O'Brien", "Under_score"]),
        ("AnnualRevenue <= 200", ["Alpha", "beta"]),
        ("Rating != 'Hot'", ["beta", "Gamma", "O'Brien"]),  # != matches nulls in SOQL
        ("Rating = null", ["Gamma"]),
        ("Rating IN ('Hot', 'Cold')", ["Alpha", "O'Brien", "Under_score"]),
        ("Rating NOT IN ('Hot')", ["beta", "Gamma", "O'Brien"]),
        ("LastName LIKE 'a%'", ["Alpha"]),  # case-insensitive
        ("LastName LIKE '%\\_%'", ["Under_score"]),
        ("LastName = 'O\\'Brien'", ["O'Brien"]),
        ("lastname = 'ALPHA'", ["Alpha"]),
        ("NOT (Rating = 'Hot' OR Rating = null)", ["beta", "O'Brien"]),
        ("(Rating = 'Hot' AND AnnualRevenue > 100) OR LastName = 'beta'", ["beta", "Under_score"]),
        ("HasOptedOutOfEmail = false AND AnnualRevenue >= 400", ["Under_score"]),
        ("CreatedDate > 2020-01-01T00:00:00Z AND CreatedDate < 2999-01-01T00:00:00.000+05:30", None),
    ],
)
def test_where_operators(sf: Salesforce, tagged: str, where: str, expected: list[str] | None) -> None:
    expected = expected or ["Alpha", "beta", "Gamma", "O'Brien", "Under_score"]
    assert names(sf, where) == expected


def test_order_by_with_nulls_and_direction(sf: Salesforce, tagged: str) -> None:
    assert names(sf, "Id != null", "AnnualRevenue DESC NULLS FIRST, LastName") == [
        "Gamma",
        "Under_score",
        "O'Brien",
        "beta",
        "Alpha",
    ]
    assert names(sf, "Id != null", "Rating ASC NULLS LAST, LastName DESC") == [
        "O'Brien",
        "Under_score",
        "Alpha",
        "beta",
        "Gamma",
    ]


def test_limit_offset_and_count(sf: Salesforce, tagged: str) -> None:
    result = sf.query(
        "SELECT LastName FROM Lead WHERE Company = 'QueryCo' ORDER BY LastName LIMIT 2 OFFSET 1"
    )
    assert [r["LastName"] for r in result["records"]] == ["beta", "Gamma"]
    count = sf.query("select count() from lead where company = 'QueryCo'")
    assert (count["totalSize"], count["records"]) == (5, [])


def test_parent_relationship_fields(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Parent Co"})["id"]
    sf.Contact.create({"LastName": "Child", "AccountId": account})
    record = sf.query(f"SELECT Name, Account.Name, Owner.Name FROM Contact WHERE AccountId = '{account}'")[
        "records"
    ][0]
    assert record["Account"]["Name"] == "Parent Co"
    assert record["Account"]["attributes"]["type"] == "Account"
    assert record["Owner"]["Name"] == "Ivy Integration"
    orphan = sf.Contact.create({"LastName": "Orphan"})["id"]
    assert (
        sf.query(f"SELECT Account.Name FROM Contact WHERE Id = '{orphan}'")["records"][0]["Account"] is None
    )
    assert sf.query("SELECT Id FROM Contact WHERE Account.Name = 'Parent Co'")["totalSize"] == 1


def test_field_names_are_returned_in_describe_casing(sf: Salesforce, tagged: str) -> None:
    record = sf.query("SELECT id, LASTNAME, annualrevenue FROM LEAD WHERE Company = 'QueryCo' LIMIT 1")[
        "records"
    ][0]
    assert list(record) == ["attributes", "Id", "LastName", "AnnualRevenue"]


def test_order_is_an_object_as_well_as_a_keyword(sf: Salesforce, unique: Callable[[], str]) -> None:
    account = sf.Account.create({"Name": f"Orders {unique()}"})["id"]
    made = [
        sf.Order.create({"AccountId": account, "EffectiveDate": f"2024-0{m}-01", "Name": f"O{m}"})["id"]
        for m in (2, 1)
    ]
    soql = f"SELECT Id, Name, Status, TotalAmount, Account.Name FROM Order WHERE AccountId = '{account}'"
    first = sf.query(soql + " ORDER BY Id")["records"]
    assert [r["Id"] for r in first] == made
    assert (first[0]["Status"], first[0]["TotalAmount"], first[0]["attributes"]["type"]) == (
        "Draft",
        0,
        "Order",
    )
    assert first[0]["Account"]["Name"].startswith("Orders ")
    ordered = sf.query_all(f"select id from order where accountid = '{account}' order by EffectiveDate DESC")
    assert [r["Id"] for r in ordered["records"]] == made
    assert sf.query(f"SELECT COUNT() FROM ORDER WHERE AccountId = '{account}'")["totalSize"] == 2
    bulk = [row for page in sf.bulk2.Order.query(soql, wait=0) for row in csv.DictReader(io.StringIO(page))]
    assert sorted(r["Id"] for r in bulk) == sorted(made)
    assert sf.Order.describe()["keyPrefix"] == "801"


def test_order_relationship_paths_parse() -> None:
    query = parse(
        "SELECT Order.Name FROM OrderItem WHERE Order.Status = 'Draft' ORDER BY Order.EffectiveDate"
    )
    assert query.sobject == "OrderItem"
    assert [p.parts for p in (*query.fields, query.order[0].path)] == [
        ("Order", "Name"),
        ("Order", "EffectiveDate"),
    ]


@pytest.mark.parametrize(
    ("soql", "code", "text"),
    [
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "ERROR at Row:1:Column:26\nunexpected token: <EOF>"),
        (
            "SELECT Id FROM Lead WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "MALFORMED_QUERY",
            "unexpected token: OR",
        ),
        ("SELECT Id FROM Lead GROUP BY Name", "MALFORMED_QUERY", "unexpected token: GROUP"),
        ("SELECT Id FROM Lead ORDER Id", "MALFORMED_QUERY", "unexpected token: Id"),
        ("SELECT Order FROM Order", "MALFORMED_QUERY", "unexpected token: Order"),
        ("SELECT Id, Nope__c FROM Lead", "INVALID_FIELD", "No such column 'Nope__c' on entity 'Lead'"),
        ("SELECT Id, Internal_Rating__c FROM Lead", "INVALID_FIELD", "No such column 'Internal_Rating__c'"),
        ("SELECT Id FROM Foo", "INVALID_TYPE", "sObject type 'Foo' is not supported."),
        ("SELECT Id FROM Lead WHERE CreatedDate > 2024-01-01", "INVALID_FIELD", "must be of type dateTime"),
        ("SELECT Id FROM Lead WHERE AnnualRevenue > '5'", "INVALID_FIELD", "must be of type currency"),
        ("SELECT Id FROM Lead WHERE Notes__c = 'x'", "INVALID_FIELD", "can not be filtered"),
        ("SELECT Id FROM Lead WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: nope"),
        ("SELECT Id, Nobody.Name FROM Lead", "INVALID_FIELD", "Didn't understand relationship 'Nobody'"),
        ("SELECT Id FROM Lead LIMIT 5 OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset"),
        ('SELECT Id FROM Lead WHERE LastName = "x"', "MALFORMED_QUERY", "Column:38\nunexpected token: '\"'"),
    ],
)
def test_query_errors(sf: Salesforce, soql: str, code: str, text: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query(soql)
    error = caught.value.content[0]
    assert error["errorCode"] == code
    assert text in error["message"]


def test_paging_with_small_batches(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    for start in range(0, 450, 200):
        chunk = [
            {"attributes": {"type": "Lead"}, **lead(Company=company, LastName=f"P{i:04d}")}
            for i in range(start, min(start + 200, 450))
        ]
        sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": chunk})
    soql = f"SELECT Id, LastName FROM Lead WHERE Company = '{company}' ORDER BY LastName"
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(soql, headers=headers)
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    # The cursor is a snapshot: a record added while paging does not appear.
    sf.Lead.create(lead(Company=company, LastName="P0000a"))
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    assert [r["LastName"] for r in second["records"]][:2] == ["P0200", "P0201"]
    rows = list(sf.query_all_iter(soql, headers={"Sforce-Query-Options": "batchSize=50"}))  # clamped to 200
    assert len(rows) == 451
    assert [r["LastName"] for r in rows][:3] == ["P0000", "P0000a", "P0001"]


def test_query_all_includes_deleted_records(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    keep, gone = (sf.Lead.create(lead(Company=company))["id"] for _ in range(2))
    sf.Lead.delete(gone)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Company = '{company}'"
    assert [r["Id"] for r in sf.query_all(soql)["records"]] == [keep]
    every = sf.query_all(soql, include_deleted=True)["records"]
    assert {(r["Id"], r["IsDeleted"]) for r in every} == {(keep, False), (gone, True)}


def test_hook_make_query_and_dataframe(
    local_org: object, monkeypatch: pytest.MonkeyPatch, tagged: str
) -> None:
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", local_org.airflow_conn_json())  # type: ignore[attr-defined]
    hook = SalesforceHook(salesforce_conn_id="salesforce_default")
    result = hook.make_query("SELECT Id, LastName, CreatedDate FROM Lead WHERE Company = 'QueryCo'")
    frame = hook.object_to_df(result["records"], coerce_to_timestamp=True)
    assert len(frame) == 5 and {"id", "lastname", "createddate"} <= set(frame.columns)


def test_paging_snapshot_when_records_are_deleted_or_purged_between_pages(
    sf: Salesforce, admin: Salesforce, store: Org, unique: Callable[[], str]
) -> None:
    company = unique()
    store.seed(
        "Lead", (lead(Company=company, LastName=f"S{i:04d}") for i in range(450)), "integration@localorg.test"
    )
    soql = f"SELECT Id, LastName, IsDeleted FROM Lead WHERE Company = '{company}' ORDER BY LastName"
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(soql, headers=headers)
    later = [r["Id"] for r in sf.query_all(soql)["records"][200:]]
    sf.Lead.delete(later[0])  # deleted: still in the snapshot, read as it is now
    admin.bulk2.Lead.hard_delete(records=[{"Id": i} for i in later[1:3]], wait=0)  # purged: gone
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    assert second["totalSize"] == 448 and len(second["records"]) == 200
    assert second["records"][0]["IsDeleted"] is True
    assert [r["LastName"] for r in second["records"]][1:3] == ["S0203", "S0204"]
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    assert third["done"] and len(first["records"]) + 200 + len(third["records"]) == third["totalSize"] == 448
