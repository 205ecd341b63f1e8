"""Write-back rules: per-field conflicts, survivors of merges and conversions, campaign membership, pushes
retried after a crash, and the Bulk API 2.0 path for large cycles."""

from __future__ import annotations

import psycopg
import pytest
from simple_salesforce import Salesforce

from localorg.seed import Seeder, counts_for
from localorg.store import Org
from localorg.testing import next_second, sample_lead
from sfsync import warehouse

pytestmark = pytest.mark.integration


def execute(url: str, statement: str, params: list | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


def fetch(url: str, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def outbound_run(url: str, sobject: str) -> dict:
    names = ("new", "updated", "deleted", "skipped", "failed", "written", "api_calls")
    row = fetch(
        url,
        f"SELECT {', '.join(names)} FROM sfsync.sync_runs WHERE direction = 'outbound' AND sobject = %s"
        " ORDER BY started_at DESC LIMIT 1",
        [sobject],
    )[0]
    return dict(zip(names, row, strict=True))


def test_both_sides_edit_lead_follows_the_warehouse_and_contact_follows_salesforce(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        lead = admin.Lead.create(sample_lead(Title="Analyst", Phone="+1 555 0001"))["id"]
        contact = admin.Contact.create({"LastName": "Hopper", "Title": "Analyst", "Phone": "+1 555 0002"})[
            "id"
        ]
        sync("lead"), sync("contact")
        next_second()
        # The same field (Title) on both sides, and one different field on each side.
        admin.Lead.update(lead, {"Title": "Salesforce title", "Phone": "+1 555 1001"})
        admin.Contact.update(contact, {"Title": "Salesforce title", "Phone": "+1 555 1002"})
        execute(warehouse_url, "UPDATE salesforce.lead SET title = 'Warehouse title', rating = 'Hot'")
        execute(warehouse_url, "UPDATE salesforce.contact SET title = 'Warehouse title', department = 'Ops'")
        sync("lead"), sync("contact")

        got = admin.Lead.get(lead)
        assert (got["Title"], got["Phone"], got["Rating"]) == ("Warehouse title", "+1 555 1001", "Hot")
        got = admin.Contact.get(contact)
        assert (got["Title"], got["Phone"], got["Department"]) == ("Salesforce title", "+1 555 1002", "Ops")
        assert fetch(
            warehouse_url,
            "SELECT sobject, sfid, field, base_value, warehouse_value, salesforce_value, winner"
            " FROM sfsync.conflicts ORDER BY sobject",
        ) == [("Contact", contact, "title", "Analyst", "Warehouse title", "Salesforce title", "salesforce")]
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        matches_org("Lead", integration)
        matches_org("Contact", integration)
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.outbox WHERE pushed_at IS NULL") == [(0,)]


def test_conflict_rules_are_configurable_per_object_and_per_field(sync, registry, private_org, warehouse_url):
    registry(
        Lead="conflicts: {winner: salesforce}",
        Contact="conflicts: {fields: {Title: warehouse}}",
    )
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        lead = admin.Lead.create(sample_lead(Title="Analyst"))["id"]
        contact = admin.Contact.create({"LastName": "Hopper", "Title": "Analyst", "Department": "R&D"})["id"]
        sync("lead"), sync("contact")
        next_second()
        admin.Lead.update(lead, {"Title": "Salesforce title"})
        admin.Contact.update(contact, {"Title": "Salesforce title", "Department": "Salesforce dept"})
        execute(warehouse_url, "UPDATE salesforce.lead SET title = 'Warehouse title'")
        execute(warehouse_url, "UPDATE salesforce.contact SET title = 'Warehouse title', department = 'Ops'")
        sync("lead"), sync("contact")
        assert admin.Lead.get(lead)["Title"] == "Salesforce title", "the object's rule"
        got = admin.Contact.get(contact)
        assert (got["Title"], got["Department"]) == ("Warehouse title", "Salesforce dept"), "per field"
        assert fetch(warehouse_url, "SELECT title FROM salesforce.lead") == [("Salesforce title",)]


def test_a_change_to_a_merged_or_converted_record_reaches_the_survivor(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        leads = [
            admin.Lead.create(sample_lead(LastName=f"L{i}", Email=f"l{i}@example.com"))["id"]
            for i in range(5)
        ]
        sync("lead"), sync("contact")
        # Known to the warehouse: leads[0] was merged into leads[1] and the pull brought it.
        assert org.admin("merge", {"masterId": leads[1], "duplicateIds": [leads[0]]})[0] == 200
        sync("lead")
        # Not yet known: leads[2] merged into leads[3], leads[4] converted, after the warehouse edits.
        execute(
            warehouse_url,
            "UPDATE salesforce.lead SET title = 'Edited ' || lastname, rating = 'Warm' WHERE id = ANY(%s)",
            [[leads[0], leads[2], leads[4]]],
        )
        assert org.admin("merge", {"masterId": leads[3], "duplicateIds": [leads[2]]})[0] == 200
        status, converted = org.admin("convert-lead", {"leadId": leads[4], "doNotCreateOpportunity": True})
        assert status == 200
        sync("lead"), sync("contact")

        assert admin.Lead.get(leads[1])["Title"] == "Edited L0"
        assert admin.Lead.get(leads[3])["Title"] == "Edited L2"
        contact = admin.Contact.get(converted["contactId"])
        assert contact["Title"] == "Edited L4", "a converted lead's change goes to its contact"
        assert fetch(
            warehouse_url,
            "SELECT sfid, pushed_to FROM sfsync.outbox WHERE sfid = ANY(%s) ORDER BY sfid",
            [[leads[0], leads[2], leads[4]]],
        ) == sorted([(leads[0], leads[1]), (leads[2], leads[3]), (leads[4], converted["contactId"])])
        assert fetch(warehouse_url, "SELECT sfid, field, winner, reason FROM sfsync.conflicts") == [
            (leads[4], "rating", "salesforce", f"Contact {converted['contactId']} has no such field to write")
        ], "the Lead-only field it could not carry is recorded, not silently dropped"
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.sync_errors") == [(0,)]
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        matches_org("Lead", integration)
        matches_org("Contact", integration)


def test_campaign_members_inserted_in_the_warehouse_join_their_campaign_with_a_status(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        campaign = admin.Campaign.create({"Name": "Webinar", "IsActive": True})["id"]
        lead = admin.Lead.create(sample_lead())["id"]
        contact = admin.Contact.create({"LastName": "Hopper"})["id"]
        for table in ("campaign", "lead", "contact", "campaignmember"):
            sync(table)
        execute(
            warehouse_url,
            "INSERT INTO salesforce.campaignmember (campaignid, leadid, contactid, status) VALUES"
            " (%s, %s, NULL, 'Responded'), (%s, NULL, %s, 'Planned'), (%s, NULL, NULL, 'Sent')",
            [campaign, lead, campaign, contact, campaign],
        )
        sync("campaignmember")
        assert outbound_run(warehouse_url, "CampaignMember") | {"api_calls": None} == {
            "new": 2, "updated": 0, "deleted": 0, "skipped": 0, "failed": 1, "written": 2, "api_calls": None
        }  # fmt: skip
        members = admin.query(
            "SELECT LeadId, ContactId, Status, HasResponded FROM CampaignMember"
            f" WHERE CampaignId = '{campaign}'"
        )
        assert sorted(
            (m["LeadId"] or m["ContactId"], m["Status"], m["HasResponded"]) for m in members["records"]
        ) == sorted([(lead, "Responded", True), (contact, "Planned", False)])
        ((code, fields),) = fetch(warehouse_url, "SELECT status_code, fields FROM sfsync.sync_errors")
        assert code == "REQUIRED_FIELD_MISSING", "a member needs a lead or a contact"
        execute(
            warehouse_url,
            "UPDATE salesforce.campaignmember SET status = 'Received' WHERE leadid = %s",
            [lead],
        )
        sync("campaignmember")
        assert (
            admin.query(f"SELECT Status FROM CampaignMember WHERE LeadId = '{lead}'")["records"][0]["Status"]
            == "Received"
        )
        matches_org("CampaignMember", Salesforce(**org.salesforce_kwargs("integration")))


def test_an_insert_pushed_again_after_a_crash_finds_its_record_instead_of_creating_a_twin(
    sync, private_org, warehouse_url
):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead())
        sync("lead")
        execute(
            warehouse_url,
            "INSERT INTO salesforce.lead (lastname, company, email) VALUES ('Twin', 'Co', 't@example.com')",
        )
        sync("lead")
        ((first_id,),) = fetch(warehouse_url, "SELECT id FROM salesforce.lead WHERE lastname = 'Twin'")
        # The worker died after Salesforce created the record, before the new Id reached the row.
        with psycopg.connect(warehouse_url, autocommit=True) as conn, conn.transaction():
            warehouse.as_the_sync(conn)
            conn.execute("UPDATE salesforce.lead SET id = NULL WHERE lastname = 'Twin'")
            conn.execute("UPDATE sfsync.outbox SET pushed_at = NULL")
        sync("lead")
        twins = admin.query("SELECT Id FROM Lead WHERE LastName = 'Twin'")["records"]
        assert [t["Id"] for t in twins] == [first_id]
        assert fetch(warehouse_url, "SELECT id FROM salesforce.lead WHERE lastname = 'Twin'") == [(first_id,)]


def test_without_a_warehouse_key_field_inserts_are_plain_creates(
    sync, private_org, org_definition, matches_org, warehouse_url
):
    def hide_key(document):
        profile = next(p for p in document["profiles"] if p["name"] == "Integration User")
        profile.setdefault("hidden_fields", {}).setdefault("Lead", []).append("Warehouse_Id__c")

    with private_org(org_file=org_definition(hide_key)) as org:
        Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())
        sync("lead")
        execute(
            warehouse_url, "INSERT INTO salesforce.lead (lastname, email) VALUES ('Keyless', 'k@example.com')"
        )
        sync("lead")
        assert outbound_run(warehouse_url, "Lead")["new"] == 1
        ((sfid,),) = fetch(warehouse_url, "SELECT id FROM salesforce.lead WHERE lastname = 'Keyless'")
        assert sfid is not None
        assert "warehouse_id__c" not in fetch(
            warehouse_url,
            "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'lead'",
        )[0][0].split(","), "the key field is hidden from the integration user"
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_ten_thousand_edits_in_one_cycle_go_through_the_bulk_api(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        # A fifth of the seeded Leads belong to a user the integration user cannot see.
        only_leads = {name: 0 for name in counts_for(1) if name != "Lead"}
        Seeder(Org(org.data_dir, org.definition), seed=3).run(counts_for(14_000, only_leads))
        sync("lead")
        execute(
            warehouse_url,
            "UPDATE salesforce.lead SET title = 'Bulk ' || _sfsync_row_id, numberofemployees = NULL"
            " WHERE _sfsync_row_id IN (SELECT _sfsync_row_id FROM salesforce.lead"
            " WHERE NOT isdeleted AND NOT isconverted ORDER BY _sfsync_row_id LIMIT 10000)",
        )
        # One of them breaks a restricted picklist: Salesforce refuses it alone.
        execute(
            warehouse_url,
            "UPDATE salesforce.lead SET status = 'Maybe Later'"
            " WHERE _sfsync_row_id = (SELECT min(_sfsync_row_id) FROM salesforce.lead"
            " WHERE title LIKE 'Bulk %')",
        )
        execute(
            warehouse_url,
            "INSERT INTO salesforce.lead (lastname, company, email)"
            " SELECT 'New ' || n, 'Co', 'new' || n || '@example.com' FROM generate_series(1, 2500) n",
        )
        sync("lead")
        run = outbound_run(warehouse_url, "Lead")
        assert (run["new"], run["updated"], run["failed"]) == (2500, 9999, 1)
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        jobs = integration.restful("jobs/ingest")["records"]
        assert sorted((j["operation"], j["object"], j["state"]) for j in jobs) == [
            ("update", "Lead", "JobComplete"),
            ("upsert", "Lead", "JobComplete"),
        ], "one Bulk job per operation"
        assert run["api_calls"] <= 20, "sObject Collections would take 63 calls"
        ((code, message),) = fetch(warehouse_url, "SELECT status_code, message FROM sfsync.sync_errors")
        assert code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and "Maybe Later" in message
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        assert admin.query("SELECT COUNT() FROM Lead WHERE Title LIKE 'Bulk %'")["totalSize"] == 9999
        assert admin.query("SELECT COUNT() FROM Lead WHERE LastName LIKE 'New %'")["totalSize"] == 2500
        assert fetch(warehouse_url, "SELECT count(*) FROM salesforce.lead WHERE id IS NULL") == [(0,)]
        execute(
            warehouse_url,
            "UPDATE salesforce.lead SET status = 'Working - Contacted' WHERE status = 'Maybe Later'",
        )
        sync("lead")  # the fixed row goes on its own
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.sync_errors") == [(0,)]
        assert admin.query("SELECT COUNT() FROM Lead WHERE Title LIKE 'Bulk %'")["totalSize"] == 10_000
        matches_org("Lead", integration)
        again = sync("lead")
        assert (again["new"], again["updated"]) == (0, 0), "no echo"
