"""Write-back: warehouse edits of bidirectional objects reach Salesforce in the object's own DAG run
(push, then pull), every record's result is checked, and nothing echoes."""

from __future__ import annotations

import psycopg
import pytest
from simple_salesforce import Salesforce

from localorg.testing import sample_lead

pytestmark = pytest.mark.integration


def errors(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT sfid, operation, status_code, message, transient FROM sfsync.sync_errors ORDER BY row_id"
        ).fetchall()


def pushed(url: str, run_sobject: str = "Lead") -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT new, updated, failed, api_calls FROM sfsync.sync_runs WHERE direction = 'outbound'"
            " AND sobject = %s ORDER BY started_at DESC LIMIT 1",
            [run_sobject],
        ).fetchone()


def synced_leads(org, sync, warehouse_url: str, count: int, edit: str) -> tuple[Salesforce, list[str]]:
    """The admin's client and ``count`` new Leads, pulled into the warehouse and then edited there by
    ``edit`` (an UPDATE of salesforce.lead)."""
    admin = Salesforce(**org.salesforce_kwargs("admin"))
    leads = [admin.Lead.create(sample_lead(Email=f"l{i}@example.com"))["id"] for i in range(count)]
    sync("lead")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(edit)
    return admin, leads


def test_edits_and_inserts_reach_salesforce_without_echo(sync, private_org, matches_org, warehouse_url):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        lead = admin.Lead.create(sample_lead(Title="CTO"))["id"]
        sync("lead")
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET title = 'CEO', rating = 'Hot' WHERE id = %s", [lead])
            conn.execute(
                "INSERT INTO salesforce.lead (email, phone) VALUES ('new@example.com', '+1 555 0100')"
            )
        ran = sync("lead")
        assert ran["status"] == "merged"
        assert pushed(warehouse_url) == (1, 1, 0, 3), "one update, a describe for the upsert key, one upsert"
        record = admin.Lead.get(lead)
        assert (record["Title"], record["Rating"]) == ("CEO", "Hot")
        with psycopg.connect(warehouse_url) as conn:
            (new_id,) = conn.execute(
                "SELECT id FROM salesforce.lead WHERE email = 'new@example.com'"
            ).fetchone()
        created = admin.Lead.get(new_id)
        assert (created["LastName"], created["Company"]) == ("[not provided]", "[not provided]"), (
            "first-push defaults"
        )
        matches_org("Lead", integration)

        def stamps() -> dict:
            return {
                r["Id"]: r["SystemModstamp"]
                for r in admin.query("SELECT Id, SystemModstamp FROM Lead")["records"]
            }

        before = stamps()
        again = sync("lead")  # a second cycle: nothing to push, and the pull changes no row
        assert (again["new"], again["updated"], again["deleted"]) == (0, 0, 0)
        assert stamps() == before, "no write reached Salesforce"
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute(
                "SELECT count(*) FROM sfsync.sync_runs WHERE direction = 'outbound'"
            ).fetchone() == (1,), "the second cycle had nothing to push"
            assert conn.execute("SELECT count(*) FROM sfsync.outbox WHERE pushed_at IS NULL").fetchone() == (
                0,
            )


def test_a_refused_record_is_kept_with_salesforces_message_and_retried_once_fixed(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        lead = Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())["id"]
        sync("lead")
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET status = 'Maybe Later' WHERE id = %s", [lead])
        sync("lead")
        ((sfid, operation, code, message, transient),) = errors(warehouse_url)
        assert (sfid, operation, code, transient) == (
            lead,
            "update",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            False,
        )
        assert "Maybe Later" in message
        with psycopg.connect(warehouse_url) as conn:
            summary = conn.execute(
                "SELECT failed, written, message FROM sfsync.sync_runs WHERE direction = 'outbound'"
            ).fetchone()
        assert summary == (1, 0, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST x1"), "the run summary shows it"
        sync("lead")
        assert errors(warehouse_url)[0][2] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", (
            "kept, not retried blindly"
        )
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET status = 'Working - Contacted' WHERE id = %s", [lead])
        sync("lead")
        assert errors(warehouse_url) == []
        assert Salesforce(**org.salesforce_kwargs("admin")).Lead.get(lead)["Status"] == "Working - Contacted"
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_a_locked_row_is_retried_after_a_backoff_that_doubles(sync, private_org, warehouse_url):
    def backoff() -> tuple:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute(
                "SELECT status_code, transient, attempts,"
                " round(extract(epoch FROM next_attempt_at - last_seen)) FROM sfsync.sync_errors"
            ).fetchone()

    def time_passes() -> None:
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE sfsync.sync_errors SET next_attempt_at = now()")

    with private_org() as org:
        lead = Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())["id"]
        sync("lead")
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET title = 'VP' WHERE id = %s", [lead])
        assert org.admin("faults", {"kind": "lock_row", "count": 2})[0] == 200
        sync("lead")
        assert backoff() == ("UNABLE_TO_LOCK_ROW", True, 1, 60)
        sync("lead")
        assert backoff() == ("UNABLE_TO_LOCK_ROW", True, 1, 60), "not retried before its time"
        time_passes()
        sync("lead")
        assert backoff() == ("UNABLE_TO_LOCK_ROW", True, 2, 120), "the second failure waits twice as long"
        time_passes()
        sync("lead")
        assert errors(warehouse_url) == []
        assert Salesforce(**org.salesforce_kwargs("admin")).Lead.get(lead)["Title"] == "VP", (
            "the edit is not lost"
        )
        sync("lead")
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT title FROM salesforce.lead WHERE id = %s", [lead]).fetchone() == (
                "VP",
            )


def test_deletes_reach_salesforce_only_where_the_registry_allows_them(
    sync, registry, private_org, warehouse_url
):
    registry(Lead="allow_delete: true")
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        lead, both = (admin.Lead.create(sample_lead())["id"] for _ in range(2))
        sync("lead")
        admin.Lead.delete(both)  # deleted on both sides: the warehouse's delete has its way too
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("DELETE FROM salesforce.lead WHERE id = ANY(%s)", [[lead, both]])
        sync("lead")
        assert pushed(warehouse_url)[:3] == (0, 0, 0)
        assert errors(warehouse_url) == []
        gone = admin.query_all(f"SELECT IsDeleted FROM Lead WHERE Id = '{lead}'", include_deleted=True)
        assert gone["records"][0]["IsDeleted"] is True
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT id, isdeleted FROM salesforce.lead ORDER BY id").fetchall() == sorted(
                [(lead, True), (both, True)]
            )
            assert conn.execute("SELECT count(*) FROM sfsync.outbox WHERE pushed_at IS NULL").fetchone() == (
                0,
            )


def test_a_large_backlog_goes_in_several_runs_and_several_bulk_jobs(
    sync, registry, private_org, warehouse_url, monkeypatch
):
    from sfsync.writeback import bulk, pending

    registry(Lead="bulk_threshold: 1")
    monkeypatch.setattr(pending, "MAX_PUSH_ROWS", 4)  # rows per run
    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", 100)  # CSV bytes per job: about two records
    with private_org() as org:
        edit = "UPDATE salesforce.lead SET title = 'Part ' || id"
        admin, leads = synced_leads(org, sync, warehouse_url, 6, edit)
        sync("lead")
        assert pushed(warehouse_url)[:3] == (0, 4, 0), "the four rows changed first"
        jobs = Salesforce(**org.salesforce_kwargs("integration")).restful("jobs/ingest")["records"]
        assert len(jobs) >= 2 and all(j["state"] == "JobComplete" for j in jobs)
        sync("lead")
        assert pushed(warehouse_url)[:3] == (0, 2, 0), "the rest on the next run"
        assert [admin.Lead.get(lead)["Title"] for lead in leads] == [f"Part {lead}" for lead in leads]


@pytest.mark.parametrize(
    ("bulk_threshold", "fault", "code"),
    [
        (2000, {"kind": "http_503", "route": "composite/sobjects", "method": "PATCH"}, "REQUEST_FAILED"),
        (2000, {"kind": "drop", "route": "composite/sobjects", "method": "PATCH"}, "REQUEST_FAILED"),
        (1, {"kind": "bulk_job_failed", "route": "jobs/ingest"}, "NOT_PROCESSED"),
    ],
)
def test_a_call_that_fails_as_a_whole_fails_its_records_for_a_later_retry(
    sync, registry, private_org, warehouse_url, bulk_threshold, fault, code
):
    registry(Lead=f"bulk_threshold: {bulk_threshold}")
    with private_org() as org:
        admin, leads = synced_leads(
            org, sync, warehouse_url, 2, "UPDATE salesforce.lead SET title = 'Retried'"
        )
        assert org.admin("faults", fault | {"count": 1})[0] == 200
        sync("lead")  # the run goes on: its pull still runs
        assert {(e[0], e[2], e[4]) for e in errors(warehouse_url)} == {(lead, code, True) for lead in leads}
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE sfsync.sync_errors SET next_attempt_at = now()")
        sync("lead")
        assert errors(warehouse_url) == []
        assert [admin.Lead.get(lead)["Title"] for lead in leads] == ["Retried", "Retried"]
