"""Record writes: CRUD, upsert, validation, sObject Collections, SystemModstamp and replication."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest, SalesforceResourceNotFound

from localorg.ids import make_id
from localorg.schema import now_ms
from localorg.store import Org
from localorg.testing import next_second
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration


def collection(
    sf: Salesforce,
    method: str,
    records: list[dict],
    all_or_none: bool = False,
    path: str = "composite/sobjects",
) -> list[dict]:
    return sf.restful(path, method=method, json={"allOrNone": all_or_none, "records": records})


def test_create_retrieve_update_delete(sf: Salesforce) -> None:
    created = sf.Lead.create(lead(FirstName="Ada"))
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert sf.Lead.get(record_id)["Name"] == "Ada Lovelace"
    assert sf.Lead.get(record_id, params={"fields": "Id,Email"}).keys() == {"attributes", "Id", "Email"}
    assert sf.Lead.update(record_id, {"Title": "Countess", "Interests__c": "Email;Mobile;Email"}) == 204
    assert sf.Lead.get(record_id)["Interests__c"] == "Email;Mobile"
    assert sf.Lead.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Lead.get(record_id)
    assert caught.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_retrieve_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Lead.get("00Q8c0000009999")
    assert caught.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Lead.get("not-an-id")
    assert "Provided external ID field does not exist" in caught.value.content[0]["message"]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Nope__c.get("00Q8c0000009999")


def test_upsert_by_external_id(sf: Salesforce, unique: Callable[[], str]) -> None:
    key = unique()
    assert sf.Lead.upsert(f"Warehouse_Id__c/{key}", lead(LastName="First")) == 201
    assert sf.Lead.upsert(f"Warehouse_Id__c/{key}", {"LastName": "Second"}) == 200
    found = sf.Lead.get_by_custom_id("Warehouse_Id__c", key)
    assert found["LastName"] == "Second" and found["Warehouse_Id__c"] == key
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.upsert(f"Email/{key}", lead())


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"LastName": "x"}, "REQUIRED_FIELD_MISSING", ["Company"]),
        (lead(Status="Bogus"), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"]),
        (lead(LastName="x" * 81), "STRING_TOO_LONG", ["LastName"]),
        (lead(Email="not-an-email"), "INVALID_EMAIL_ADDRESS", ["Email"]),
        (lead(SystemModstamp="2024-01-01T00:00:00Z"), "INVALID_FIELD_FOR_INSERT_UPDATE", ["SystemModstamp"]),
        (lead(IsConverted=True), "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsConverted"]),
        (lead(Name="Formula"), "INVALID_FIELD_FOR_INSERT_UPDATE", ["Name"]),
        (lead(OwnerId="005xyz"), "MALFORMED_ID", ["OwnerId"]),
        (lead(OwnerId="0018c0000000001AAA"), "FIELD_INTEGRITY_EXCEPTION", ["OwnerId"]),
        (lead(OwnerId="0058c0000009999"), "INVALID_CROSS_REFERENCE_KEY", ["OwnerId"]),
        (lead(AnnualRevenue="lots"), "JSON_PARSER_ERROR", ["AnnualRevenue"]),
        (lead(Email=None, Phone=None), "FIELD_CUSTOM_VALIDATION_EXCEPTION", []),
        ({**lead(), "Id": "00Q8c0000000001EAA"}, "INVALID_FIELD", ["Id"]),
    ],
)
def test_validation_errors(sf: Salesforce, body: dict, code: str, fields: list[str]) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create(body)
    error = caught.value.content[0]
    assert (error["errorCode"], error["fields"]) == (code, fields)
    if code == "FIELD_CUSTOM_VALIDATION_EXCEPTION":
        assert error["message"] == "Email or Phone required"


def test_unknown_field_and_custom_rule_on_custom_object(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create(lead(Bogus__c=1))
    assert caught.value.content[0] == {
        "message": "No such column 'Bogus__c' on sobject of type Lead",
        "errorCode": "INVALID_FIELD",
        "fields": [],
    }
    account = sf.Account.create({"Name": "Invoice Co"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Invoice__c.create(
            {
                "Name": "INV-1",
                "Account__c": account,
                "Invoice_Date__c": "2024-02-01",
                "Due_Date__c": "2024-01-01",
            }
        )
    assert caught.value.content[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert caught.value.content[0]["fields"] == ["Due_Date__c"]
    invoice = sf.Invoice__c.create({"Name": "INV-2", "Account__c": account, "Amount__c": 100, "Tax__c": 20})
    assert sf.Invoice__c.get(invoice["id"])["Total__c"] == 120.0


def test_campaign_member_needs_lead_or_contact(sf: Salesforce) -> None:
    campaign = sf.Campaign.create({"Name": "Spring"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.CampaignMember.create({"CampaignId": campaign})
    assert caught.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    member = sf.CampaignMember.create({"CampaignId": campaign, "LeadId": sf.Lead.create(lead())["id"]})
    assert sf.CampaignMember.get(member["id"])["Status"] == "Sent"


def test_collections_partial_success_in_request_order(sf: Salesforce) -> None:
    results = collection(
        sf,
        "POST",
        [
            {"attributes": {"type": "Lead"}, **lead()},
            {"attributes": {"type": "Lead"}, "LastName": "No company"},
            {"attributes": {"type": "Account"}, "Name": "Mixed types"},
            {"LastName": "no attributes"},
        ],
    )
    assert [r["success"] for r in results] == [True, False, True, False]
    assert results[1]["errors"] == [
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Company]",
            "fields": ["Company"],
        }
    ]
    assert results[3]["errors"][0]["statusCode"] == "INVALID_TYPE"
    updates = collection(
        sf,
        "PATCH",
        [
            {"attributes": {"type": "Lead"}, "Id": results[0]["id"], "Title": "Updated"},
            {"attributes": {"type": "Lead"}, "Title": "no id"},
        ],
    )
    assert updates[0] == {"id": results[0]["id"], "success": True, "errors": []}
    assert updates[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    deleted = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{results[0]['id']},{results[2]['id']},bogus", "allOrNone": "false"},
    )
    assert [d["success"] for d in deleted] == [True, True, False]
    assert deleted[2]["errors"][0]["statusCode"] == "MALFORMED_ID"


def test_collections_all_or_none_rolls_back(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    results = collection(
        sf,
        "POST",
        [
            {"attributes": {"type": "Lead"}, **lead(Company=company)},
            {"attributes": {"type": "Lead"}, **lead(Company=company, Status="Bogus")},
        ],
        all_or_none=True,
    )
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Company = '{company}'")["totalSize"] == 0


def test_collections_upsert_and_limit(sf: Salesforce, unique: Callable[[], str]) -> None:
    key = unique()
    records = [{"attributes": {"type": "Lead"}, **lead(Warehouse_Id__c=key)}]
    first = collection(sf, "PATCH", records, path="composite/sobjects/Lead/Warehouse_Id__c")
    second = collection(sf, "PATCH", records, path="composite/sobjects/Lead/Warehouse_Id__c")
    assert (first[0]["created"], second[0]["created"], first[0]["id"]) == (True, False, second[0]["id"])
    with pytest.raises(SalesforceMalformedRequest) as caught:
        collection(sf, "POST", [{"attributes": {"type": "Lead"}, **lead()}] * 201)
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_system_modstamp_moves_on_every_change(sf: Salesforce) -> None:
    contact = sf.Contact.create({"LastName": "Activity"})["id"]
    before = sf.Contact.get(contact)
    next_second()  # stamps are whole seconds, as in Salesforce
    sf.Contact.update(contact, {"Title": "A"})
    after_update = sf.Contact.get(contact)
    assert after_update["SystemModstamp"] > before["SystemModstamp"]
    assert after_update["LastModifiedDate"] == after_update["SystemModstamp"]
    # Logging an activity is a system change: LastActivityDate and SystemModstamp move, LastModifiedDate not.
    next_second()
    sf.Task.create({"Subject": "Call", "WhoId": contact, "ActivityDate": "2024-03-01"})
    after_task = sf.Contact.get(contact)
    assert after_task["LastActivityDate"] == "2024-03-01"
    assert after_task["SystemModstamp"] > after_update["SystemModstamp"]
    assert after_task["LastModifiedDate"] == after_update["LastModifiedDate"]


def test_delete_cascades_to_children(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Cascade"})["id"]
    contact = sf.Contact.create({"LastName": "Kid", "AccountId": account})["id"]
    sf.Account.delete(account)
    rows = sf.query_all(f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{contact}'", include_deleted=True)
    assert rows["records"][0]["IsDeleted"] is True


def test_updated_and_deleted_windows(sf: Salesforce, store: Org, unique: Callable[[], str]) -> None:
    integration = store.users["integration@localorg.test"]
    ten_minutes_ago = now_ms() - 10 * 60_000
    with store.write(integration, at=ten_minutes_ago) as txn:
        kept = store.save(txn, store.schema.objects["lead"], lead(Company=unique()))
        removed = store.save(txn, store.schema.objects["lead"], lead(Company=unique()))
    with store.write(integration, at=ten_minutes_ago + 60_000) as txn:
        store.delete(txn, store.schema.objects["lead"], removed)
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=15), now + timedelta(minutes=5)
    updated = sf.Lead.updated(start, end)
    assert kept in updated["ids"] and removed not in updated["ids"]
    covered = datetime.strptime(updated["latestDateCovered"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert covered <= now and covered.second == 0  # truncated to the minute, never in the future
    deleted = sf.Lead.deleted(start, end)
    assert removed in {d["id"] for d in deleted["deletedRecords"]}
    assert {"earliestDateAvailable", "latestDateCovered"} <= deleted.keys()
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.updated(now - timedelta(days=31), now)
    assert caught.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest):
        sf.Lead.deleted(now, now - timedelta(minutes=5))


def test_concurrent_clients(sf: Salesforce, unique: Callable[[], str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    company = unique()

    def work(i: int) -> str:
        record_id = sf.Lead.create(lead(Company=company, LastName=f"C{i}"))["id"]
        sf.query(f"SELECT Id FROM Lead WHERE Company = '{company}'")
        return record_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(work, range(40)))
    assert len(set(ids)) == 40
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Company = '{company}'")["totalSize"] == 40


def test_stamps_are_whole_seconds_shared_within_a_second(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    next_second()
    ids = [sf.Lead.create(lead(Company=company))["id"] for _ in range(3)]
    rows = sf.query(f"SELECT SystemModstamp, CreatedDate FROM Lead WHERE Company = '{company}'")["records"]
    assert len(ids) == 3 and all(r["SystemModstamp"].endswith(".000+0000") for r in rows)
    # Three quick writes in one second share one stamp, as in Salesforce; the sync must handle ties.
    assert len({r["SystemModstamp"] for r in rows}) == 1
    assert {r["CreatedDate"] for r in rows} == {rows[0]["SystemModstamp"]}


@pytest.mark.parametrize("field", ["Bogus__c", "Internal_Rating__c"])
def test_collections_unknown_or_hidden_field_fails_the_request(
    sf: Salesforce, unique: Callable[[], str], field: str
) -> None:
    company = unique()
    records = [
        {"attributes": {"type": "Lead"}, **lead(Company=company)},
        {"attributes": {"type": "Lead"}, **lead(Company=company, **{field: "x"})},
    ]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        collection(sf, "POST", records)
    assert caught.value.status == 400
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert f"No such column '{field}'" in caught.value.content[0]["message"]
    assert sf.query(f"SELECT COUNT() FROM Lead WHERE Company = '{company}'")["totalSize"] == 0


def test_collections_delete_result_codes(sf: Salesforce) -> None:
    binned = sf.Lead.create(lead())["id"]
    sf.Lead.delete(binned)
    never = make_id("00Q", 10**9)
    results = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{binned},{never},nope"})
    assert [(r["id"], r["errors"][0]["statusCode"]) for r in results] == [
        (binned, "ENTITY_IS_DELETED"),
        (never, "INVALID_CROSS_REFERENCE_KEY"),
        ("nope", "MALFORMED_ID"),
    ]
