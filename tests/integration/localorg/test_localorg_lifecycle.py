"""Record lifecycle over the wire: recycle bin, undelete, hard delete, purge, merge and lead conversion
(REST and Bulk where Salesforce has them, the documented admin endpoints and CLI otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from localorg.store import Org
from localorg.testing import RunningOrg, next_second
from localorg.testing import sample_lead as lead

pytestmark = pytest.mark.integration


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=10), now + timedelta(minutes=5)


@pytest.fixture
def deleted_ids(store: Org) -> Callable[[str], set[str]]:
    """What the integration user's deleted/ feed reports, including the current minute (the endpoint
    itself only covers whole minutes up to now)."""
    user = store.users["integration@localorg.test"]
    start, end = (int(t.timestamp() * 1000) for t in window())
    return lambda obj: {
        i for i, _ in store.deleted_records(user, store.schema.objects[obj.lower()], start, end)
    }


def test_admin_endpoints_need_an_admin(local_org: RunningOrg, sf: Salesforce, admin: Salesforce) -> None:
    import requests

    url = f"{local_org.base_url}/localorg/admin/undelete"
    as_sync_user = requests.post(
        url, json={"ids": ["x"]}, headers={"Authorization": f"Bearer {sf.session_id}"}
    )
    assert (as_sync_user.status_code, as_sync_user.json()[0]["errorCode"]) == (403, "INSUFFICIENT_ACCESS")
    as_admin = requests.post(
        url, json={"ids": ["bogus"]}, headers={"Authorization": f"Bearer {admin.session_id}"}
    )
    assert as_admin.json()[0]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert requests.post(url, json={}, headers={"X-Localorg-Admin-Token": "wrong"}).status_code == 401


def test_delete_and_undelete(
    local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str], deleted_ids: Callable[[str], set[str]]
) -> None:
    account = sf.Account.create({"Name": unique()})["id"]
    contact = sf.Contact.create({"LastName": "Child", "AccountId": account})["id"]
    before = sf.Account.get(account)["SystemModstamp"]
    next_second()  # stamps are whole seconds, as in Salesforce
    sf.Account.delete(account)
    assert {account, contact} <= deleted_ids("Account") | deleted_ids("Contact")
    status, results = local_org.admin("undelete", {"ids": [account, contact]})
    assert status == 200 and results[0]["success"] is True
    # The contact came back with its parent, so undeleting it again finds nothing in the recycle bin.
    assert results[1]["errors"][0]["statusCode"] == "UNDELETE_FAILED"
    restored = sf.Account.get(account)
    assert restored["IsDeleted"] is False and restored["SystemModstamp"] > before
    assert restored["LastModifiedDate"] == restored["SystemModstamp"]
    assert sf.Contact.get(contact)["IsDeleted"] is False
    # Incremental syncs see the restored record (updated/ covers whole minutes only, so ask SOQL).
    since = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp > {before.replace('+0000', 'Z')}")
    assert account in {r["Id"] for r in since["records"]}
    assert account not in deleted_ids("Account")


def test_purge_and_hard_delete_leave_only_the_deleted_feed(
    local_org: RunningOrg,
    sf: Salesforce,
    admin: Salesforce,
    unique: Callable[[], str],
    deleted_ids: Callable[[str], set[str]],
) -> None:
    company = unique()
    binned, live = (sf.Lead.create(lead(Company=company))["id"] for _ in range(2))
    sf.Lead.delete(binned)
    status, results = local_org.admin("purge", {"ids": [binned, live]})
    assert [r["success"] for r in results] == [True, False]
    admin.bulk2.Lead.hard_delete(records=[{"Id": live}], wait=0)
    soql = f"SELECT Id FROM Lead WHERE Company = '{company}'"
    assert sf.query_all(soql, include_deleted=True)["totalSize"] == 0
    # Salesforce keeps reporting purged records to getDeleted until they are physically removed.
    assert {binned, live} <= deleted_ids("Lead")
    _, again = local_org.admin("undelete", {"ids": [binned]})
    assert again[0]["success"] is False


def test_merge_moves_children_and_marks_losers(
    local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str], deleted_ids: Callable[[str], set[str]]
) -> None:
    master, loser = (sf.Account.create({"Name": unique()})["id"] for _ in range(2))
    contact = sf.Contact.create({"LastName": "Moved", "AccountId": loser})["id"]
    stamp = sf.Contact.get(contact)["SystemModstamp"]
    next_second()
    status, result = local_org.admin("merge", {"masterId": master, "duplicateIds": [loser]})
    assert status == 200 and result["mergedRecordIds"] == [loser]
    moved = sf.Contact.get(contact)
    assert moved["AccountId"] == master and moved["SystemModstamp"] > stamp
    gone = sf.query_all(
        f"SELECT IsDeleted, MasterRecordId FROM Account WHERE Id = '{loser}'", include_deleted=True
    )
    assert (gone["records"][0]["IsDeleted"], gone["records"][0]["MasterRecordId"]) == (True, master)
    assert loser in deleted_ids("Account")
    status, error = local_org.admin("merge", {"masterId": master, "duplicateIds": [master]})
    assert status == 400 and error[0]["errorCode"] == "INVALID_OPERATION"


def test_convert_lead(local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    lead_id = sf.Lead.create(lead(Company=company, FirstName="Grace", City="Arlington"))["id"]
    campaign = sf.Campaign.create({"Name": company})["id"]
    member = sf.CampaignMember.create({"CampaignId": campaign, "LeadId": lead_id})["id"]
    task = sf.Task.create({"Subject": "Call", "WhoId": lead_id, "ActivityDate": "2024-05-01"})["id"]
    status, result = local_org.admin(
        "convert-lead", {"leadId": lead_id, "asUser": "integration@localorg.test"}
    )
    assert status == 200, result
    converted = sf.Lead.get(lead_id)
    assert converted["IsConverted"] is True and converted["Status"] == "Closed - Converted"
    assert (
        converted["ConvertedAccountId"],
        converted["ConvertedContactId"],
        converted["ConvertedOpportunityId"],
    ) == (result["accountId"], result["contactId"], result["opportunityId"])
    assert converted["ConvertedDate"] == datetime.now(UTC).date().isoformat()
    contact = sf.Contact.get(result["contactId"])
    assert (contact["Name"], contact["AccountId"], contact["MailingCity"]) == (
        "Grace Lovelace",
        result["accountId"],
        "Arlington",
    )
    assert contact["LastActivityDate"] == "2024-05-01"
    assert sf.Account.get(result["accountId"])["Name"] == company
    assert sf.Opportunity.get(result["opportunityId"])["AccountId"] == result["accountId"]
    assert sf.CampaignMember.get(member)["ContactId"] == result["contactId"]
    assert sf.Task.get(task)["WhoId"] == result["contactId"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.update(lead_id, {"Title": "Read-only now"})
    assert caught.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    status, reuse = local_org.admin(
        "convert-lead",
        {
            "leadId": sf.Lead.create(lead(Company=company))["id"],
            "accountId": result["accountId"],
            "contactId": result["contactId"],
            "doNotCreateOpportunity": True,
        },
    )
    assert (reuse["contactId"], reuse["opportunityId"]) == (result["contactId"], None)


def test_cli_runs_admin_operations_through_the_server(local_org: RunningOrg, sf: Salesforce) -> None:
    record = sf.Lead.create(lead())["id"]
    sf.Lead.delete(record)
    command = [
        sys.executable,
        "-m",
        "localorg",
        "admin",
        "--data",
        str(local_org.data_dir),
        "--port",
        str(local_org.port),
        "undelete",
        record,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert '"success": true' in out
    assert sf.Lead.get(record)["IsDeleted"] is False


def test_delete_clears_optional_lookups_and_undelete_restores_some(
    local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str]
) -> None:
    parent = sf.Account.create({"Name": unique()})["id"]
    child = sf.Account.create({"Name": unique(), "ParentId": parent})["id"]
    campaign = sf.Campaign.create({"Name": unique()})["id"]
    opportunity = sf.Opportunity.create(
        {"Name": unique(), "StageName": "Prospecting", "CloseDate": "2024-06-01", "CampaignId": campaign}
    )["id"]
    before = sf.Account.get(child)
    next_second()
    sf.Account.delete(parent)
    sf.Campaign.delete(campaign)
    # "Clear the value of this field" is a system change: SystemModstamp moves, LastModifiedDate does not.
    cleared = sf.Account.get(child)
    assert cleared["ParentId"] is None and cleared["SystemModstamp"] > before["SystemModstamp"]
    assert cleared["LastModifiedDate"] == before["LastModifiedDate"]
    assert sf.Opportunity.get(opportunity)["CampaignId"] is None
    _, results = local_org.admin("undelete", {"ids": [parent, campaign]})
    assert [r["success"] for r in results] == [True, True]
    # Undelete restores Parent Account (and custom lookups) but not an opportunity's campaign.
    assert sf.Account.get(child)["ParentId"] == parent
    assert sf.Opportunity.get(opportunity)["CampaignId"] is None


def test_required_lookup_restricts_delete(sf: Salesforce, unique: Callable[[], str]) -> None:
    name = unique()
    account = sf.Account.create({"Name": name})["id"]
    invoice = sf.Invoice__c.create({"Name": "INV-1", "Account__c": account})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.delete(account)
    assert caught.value.content[0] == {
        "errorCode": "DELETE_FAILED",
        "message": f"Your attempt to delete {name} could not be completed because it is associated with "
        "the following invoices.: INV-1",
        "fields": [],
    }
    assert sf.Account.get(account)["IsDeleted"] is False
    sf.Invoice__c.delete(invoice)
    sf.Account.delete(account)


def test_undelete_restores_only_children_deleted_with_the_parent(
    local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str]
) -> None:
    account = sf.Account.create({"Name": unique()})["id"]
    alone, cascaded = (sf.Contact.create({"LastName": "Kid", "AccountId": account})["id"] for _ in range(2))
    sf.Contact.delete(alone)
    sf.Account.delete(account)  # very likely in the same second as the contact's own delete
    local_org.admin("undelete", {"ids": [account]})
    assert sf.Contact.get(cascaded)["IsDeleted"] is False
    rows = sf.query_all(f"SELECT IsDeleted FROM Contact WHERE Id = '{alone}'", include_deleted=True)
    assert rows["records"][0]["IsDeleted"] is True


def test_campaign_membership_is_unique_through_create_merge_and_conversion(
    local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str]
) -> None:
    company = unique()
    campaign = sf.Campaign.create({"Name": company})["id"]
    master, loser = (sf.Lead.create(lead(Company=company))["id"] for _ in range(2))
    for lead_id in (master, loser):
        sf.CampaignMember.create({"CampaignId": campaign, "LeadId": lead_id})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.CampaignMember.create({"CampaignId": campaign, "LeadId": master})
    assert caught.value.content[0] == {
        "errorCode": "DUPLICATE_VALUE",
        "message": "Already a campaign member.",
        "fields": [],
    }
    members = f"SELECT Id, LeadId, ContactId FROM CampaignMember WHERE CampaignId = '{campaign}'"
    status, _ = local_org.admin("merge", {"masterId": master, "duplicateIds": [loser]})
    assert status == 200
    assert [r["LeadId"] for r in sf.query(members)["records"]] == [master]
    # Converting into a contact that is already a member keeps the contact's one membership.
    account = sf.Account.create({"Name": company})["id"]
    contact = sf.Contact.create({"LastName": "Member", "AccountId": account})["id"]
    sf.CampaignMember.create({"CampaignId": campaign, "ContactId": contact})
    status, result = local_org.admin(
        "convert-lead",
        {"leadId": master, "accountId": account, "contactId": contact, "doNotCreateOpportunity": True},
    )
    assert status == 200, result
    rows = sf.query(members)["records"]
    assert len(rows) == 2 and [r["ContactId"] for r in rows].count(contact) == 1


def admin_cli(local_org: RunningOrg, *args: str) -> dict:
    command = [sys.executable, "-m", "localorg", "admin", "--data", str(local_org.data_dir)]
    command += ["--port", str(local_org.port), *args]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def test_cli_merges_and_converts(local_org: RunningOrg, sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    master, loser = (sf.Lead.create(lead(Company=company))["id"] for _ in range(2))
    assert admin_cli(local_org, "merge", master, loser)["mergedRecordIds"] == [loser]
    assert sf.query_all(f"SELECT IsDeleted FROM Lead WHERE Id = '{loser}'", include_deleted=True)["records"][
        0
    ]["IsDeleted"]
    result = admin_cli(
        local_org, "--as-user", "integration@localorg.test", "convert-lead", master, "--no-opportunity"
    )
    assert result["opportunityId"] is None
    converted = sf.Lead.get(master)
    assert converted["IsConverted"] is True and converted["ConvertedContactId"] == result["contactId"]
    assert sf.Contact.get(result["contactId"])["OwnerId"] == converted["OwnerId"]
