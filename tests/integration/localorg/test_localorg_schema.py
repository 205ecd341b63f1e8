"""Describe, Ids, system fields and formula fields."""

from __future__ import annotations

import re

import pytest
from simple_salesforce import Salesforce

from localorg.ids import checksum
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration

PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Lead": "00Q",
    "Opportunity": "006",
    "User": "005",
    "Campaign": "701",
    "CampaignMember": "00v",
    "Task": "00T",
    "Event": "00U",
    "OpportunityContactRole": "00K",
    "CampaignMemberStatus": "01Y",
}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def test_global_describe_lists_objects_with_key_prefixes(sf: Salesforce) -> None:
    objects = {o["name"]: o for o in sf.describe()["sobjects"]}
    for name, prefix in PREFIXES.items():
        assert objects[name]["keyPrefix"] == prefix
    assert objects["Invoice__c"]["custom"] is True
    assert re.fullmatch(r"a0\w", objects["Subscription__c"]["keyPrefix"])


def test_object_describe_field_attributes(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert len(fields) >= 30
    status = fields["Status"]
    assert (status["type"], status["restrictedPicklist"], status["nillable"]) == ("picklist", True, False)
    assert {
        "value": "Open - Not Contacted",
        "label": "Open - Not Contacted",
        "active": True,
        "defaultValue": True,
        "validFor": None,
    } in status["picklistValues"]
    assert fields["Notes__c"]["length"] == 131072 and fields["Notes__c"]["filterable"] is False
    assert fields["Warehouse_Id__c"]["externalId"] is True
    assert fields["OwnerId"]["referenceTo"] == ["User"] and fields["OwnerId"]["relationshipName"] == "Owner"
    assert fields["SystemModstamp"]["type"] == "datetime" and fields["SystemModstamp"]["createable"] is False
    assert fields["AnnualRevenue"]["soapType"] == "xsd:double"
    assert fields["Interests__c"]["type"] == "multipicklist"
    for name in (
        "IsConverted",
        "ConvertedDate",
        "ConvertedAccountId",
        "ConvertedContactId",
        "ConvertedOpportunityId",
        "MasterRecordId",
        "IsDeleted",
    ):
        assert fields[name]["updateable"] is False


def test_metadata_and_describe_paths(sf: Salesforce) -> None:
    assert sf.Account.metadata()["objectDescribe"]["name"] == "Account"
    custom = sf.Invoice__c.describe()
    account = next(f for f in custom["fields"] if f["name"] == "Account__c")
    assert (account["referenceTo"], account["relationshipName"]) == (["Account"], "Account__r")


def test_field_level_security_filters_describe(sf: Salesforce, admin: Salesforce) -> None:
    assert "Internal_Rating__c" not in {f["name"] for f in sf.Lead.describe()["fields"]}
    assert "Internal_Rating__c" in {f["name"] for f in admin.Lead.describe()["fields"]}
    assert "Birthdate" not in {f["name"] for f in sf.Contact.describe()["fields"]}


def test_ids_and_system_fields(sf: Salesforce) -> None:
    record = sf.Lead.get(sf.Lead.create(lead())["id"])
    record_id = record["Id"]
    assert len(record_id) == 18 and record_id.startswith("00Q")
    assert record_id[15:] == checksum(record_id[:15])
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert DATETIME.match(record[name])
    assert record["IsDeleted"] is False and record["IsConverted"] is False
    assert record["CreatedById"] == record["LastModifiedById"] == record["OwnerId"]
    assert record["Status"] == "Open - Not Contacted"  # the picklist default


def test_formula_fields_are_computed_and_read_only(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Formula Co"})["id"]
    contact = sf.Contact.create(
        {"Salutation": "Dr.", "FirstName": "Grace", "LastName": "Hopper", "AccountId": account}
    )["id"]
    assert sf.Contact.get(contact)["Full_Name__c"] == "Dr. Grace Hopper"
    opp = sf.Opportunity.create(
        {
            "Name": "Deal",
            "StageName": "Prospecting",
            "CloseDate": "2025-01-31",
            "Amount": 1000,
            "Probability": 25,
        }
    )["id"]
    assert sf.Opportunity.get(opp)["ExpectedRevenue"] == 250.0
    rows = sf.query(f"SELECT Id FROM Opportunity WHERE ExpectedRevenue = 250 AND Id = '{opp}'")
    assert rows["totalSize"] == 1
    described = {f["name"]: f for f in sf.Contact.describe()["fields"]}["Full_Name__c"]
    assert described["calculated"] is True and described["createable"] is False
