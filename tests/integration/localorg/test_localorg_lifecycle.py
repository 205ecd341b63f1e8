"""Record lifecycle over the wire: recycle bin, undelete, hard delete, purge, merge and lead conversion
(REST and Bulk where Salesforce has them, the documented admin endpoints and CLI otherwise)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from localorg.store import Org
from localorg.testing import RunningOrg
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
