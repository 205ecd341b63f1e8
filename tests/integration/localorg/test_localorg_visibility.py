"""Sharing: records owned by the Confidential role are invisible to the integration user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest, SalesforceResourceNotFound

from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration


def test_hidden_records_are_invisible_on_every_read_path(
    sf: Salesforce, hidden: Salesforce, admin: Salesforce
) -> None:
    secret = hidden.Lead.create(lead(Company="Secret Co"))["id"]
    gone = hidden.Lead.create(lead(Company="Secret Co"))["id"]
    hidden.Lead.delete(gone)
    visible = sf.Lead.create(lead(Company="Secret Co"))["id"]
    soql = "SELECT Id FROM Lead WHERE Company = 'Secret Co'"
    assert [r["Id"] for r in sf.query_all(soql)["records"]] == [visible]
    assert [r["Id"] for r in sf.query_all(soql, include_deleted=True)["records"]] == [visible]
    assert admin.query("SELECT COUNT() FROM Lead WHERE Company = 'Secret Co'")["totalSize"] == 2
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(secret)
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(minutes=5)
    assert secret not in admin.Lead.updated(start, end)["ids"] + sf.Lead.updated(start, end)["ids"]
    assert gone not in {d["id"] for d in sf.Lead.deleted(start, end)["deletedRecords"]}
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.update(secret, {"Title": "x"})
    assert caught.value.content[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"


def test_hidden_parent_reads_as_null_and_cannot_be_referenced(sf: Salesforce, hidden: Salesforce) -> None:
    account = hidden.Account.create({"Name": "Hidden Account"})["id"]
    contact = hidden.Contact.create({"LastName": "Visible?", "AccountId": account})["id"]
    hidden.Contact.update(
        contact, {"OwnerId": sf.Contact.get(sf.Contact.create({"LastName": "x"})["id"])["OwnerId"]}
    )
    record = sf.query(f"SELECT Id, Account.Name FROM Contact WHERE Id = '{contact}'")["records"][0]
    assert record["Account"] is None
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.create({"LastName": "Ref", "AccountId": account})
    assert caught.value.content[0]["errorCode"] == "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"


def test_field_level_security_on_queries_and_writes(sf: Salesforce, admin: Salesforce) -> None:
    record = admin.Lead.create(lead(Internal_Rating__c="A"))["id"]
    assert admin.Lead.get(record)["Internal_Rating__c"] == "A"
    assert "Internal_Rating__c" not in sf.Lead.get(record)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Lead WHERE Internal_Rating__c = 'A'")
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.update(record, {"Internal_Rating__c": "B"})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
