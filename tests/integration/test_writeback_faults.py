"""Write-back under faults: a lost answer, a value Bulk cannot carry, a row gone, a push that fails, and two
pushes at once. Nothing is lost, nothing is sent twice, and nothing stops the rest of the object."""

from __future__ import annotations

import threading

import psycopg
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from simple_salesforce import Salesforce

from localorg.testing import sample_lead
from sfsync import warehouse, writeback
from sfsync.context import run_step
from sfsync.registry import load_registry

pytestmark = pytest.mark.integration


def fetch(url: str, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def execute(url: str, statement: str, params: list | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


def retry_now(url: str) -> None:
    execute(url, "UPDATE sfsync.sync_errors SET next_attempt_at = now()")


@pytest.mark.parametrize(
    ("bulk_threshold", "fault"),
    [
        # REST: Salesforce upserts the records, and the connection drops before the answer arrives.
        (2000, {"kind": "drop", "route": "composite/sobjects/Lead/Warehouse_Id__c", "method": "PATCH"}),
        # Bulk: the job completes, and the page of results that carries the new Ids fails.
        (1, {"kind": "http_500", "route": "successfulResults"}),
    ],
    ids=["rest", "bulk"],
)
def test_an_insert_whose_answer_is_lost_arrives_once_and_the_object_keeps_syncing(
    sync, registry, private_org, matches_org, warehouse_url, bulk_threshold, fault
):
    registry(Lead=f"bulk_threshold: {bulk_threshold}")
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead())
        sync("lead")
        execute(
            warehouse_url,
            "INSERT INTO salesforce.lead (lastname, company, email) VALUES"
            " ('Lost', 'Co', 'lost1@example.com'), ('Lost', 'Co', 'lost2@example.com')",
        )
        assert org.admin("faults", fault | {"count": 1})[0] == 200
        sync("lead")  # the push loses the answer; the pull of the same run brings the two new records
        ((failed, message),) = fetch(
            warehouse_url, "SELECT failed, message FROM sfsync.sync_runs WHERE direction = 'outbound'"
        )
        assert failed == 2 and "REQUEST_FAILED" in message, "the lost answer is recorded with the push"
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.sync_errors") == [(0,)], (
            "and settled by the pull that found the records"
        )
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.outbox WHERE pushed_at IS NULL") == [(0,)]
        rows = fetch(
            warehouse_url, "SELECT email, id FROM salesforce.lead WHERE lastname = 'Lost' ORDER BY 1"
        )
        assert [email for email, _ in rows] == ["lost1@example.com", "lost2@example.com"], "no twin rows"
        assert all(sfid for _, sfid in rows), "each row found its record by its warehouse key"
        for _ in range(2):  # the retry, then a run with nothing left to do
            retry_now(warehouse_url)
            sync("lead")
        records = admin.query("SELECT Id, Email FROM Lead WHERE LastName = 'Lost' ORDER BY Email")["records"]
        assert [(r["Email"], r["Id"]) for r in records] == rows, "no twin records in Salesforce"
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.sync_errors") == [(0,)]
        assert fetch(warehouse_url, "SELECT count(*) FROM sfsync.outbox WHERE pushed_at IS NULL") == [(0,)]
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_a_twin_row_left_by_an_earlier_version_gives_its_id_to_the_row_it_came_from(
    sync, private_org, warehouse_url
):
    """A warehouse wedged before the fix: the pull had brought the pushed record in as a second row, and
    writing its Id back to the original row failed on the unique key at every push."""
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead())
        sync("lead")
        execute(
            warehouse_url, "INSERT INTO salesforce.lead (lastname, email) VALUES ('Wedged', 'w@example.com')"
        )
        sync("lead")
        ((sfid, row),) = fetch(
            warehouse_url, "SELECT id, _sfsync_row_id FROM salesforce.lead WHERE lastname = 'Wedged'"
        )
        with psycopg.connect(warehouse_url, autocommit=True) as conn, conn.transaction():
            warehouse.as_the_sync(conn)  # the lost answer: the row has no Id, a twin holds it
            conn.execute("UPDATE salesforce.lead SET id = NULL WHERE id = %s", [sfid])
            conn.execute(
                "INSERT INTO salesforce.lead (id, lastname, email, systemmodstamp, isdeleted)"
                " VALUES (%s, 'Wedged', 'w@example.com', now(), false)",
                [sfid],
            )
            conn.execute("UPDATE sfsync.outbox SET pushed_at = NULL WHERE row_id = %s", [row])
        sync("lead")
        assert fetch(
            warehouse_url, "SELECT id, _sfsync_row_id FROM salesforce.lead WHERE lastname = 'Wedged'"
        ) == [(sfid, row)]
        assert [r["Id"] for r in admin.query("SELECT Id FROM Lead WHERE LastName = 'Wedged'")["records"]] == [
            sfid
        ]


def test_a_failing_push_never_holds_the_pull_back(dagbag, private_org, warehouse_url):
    dag = dagbag.dags["sf_sync__lead"]
    for task in dag.tasks:
        task.retries = 0
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead())
        assert dag.test().state == DagRunState.SUCCESS
        execute(
            warehouse_url, "INSERT INTO salesforce.lead (lastname, email) VALUES ('Stuck', 's@example.com')"
        )
        # The push's describe (for the warehouse key) fails; the pull's describe travels in a composite call.
        assert org.admin("faults", {"kind": "http_500", "route": "sobjects/Lead/describe"})[0] == 200
        arrived = admin.Lead.create(sample_lead(LastName="Arrived"))["id"]
        run = dag.test()
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        # The run succeeds with its pull: a write-back broken for hours must not pause the DAG (after
        # max_consecutive_failed_dag_runs) and stop Salesforce's changes from arriving.
        assert run.state == DagRunState.SUCCESS
        assert states["push_changes"] == TaskInstanceState.FAILED
        assert states["extract_deltas"] == TaskInstanceState.SUCCESS
        assert states["merge_into_target"] == TaskInstanceState.SUCCESS
        assert fetch(warehouse_url, "SELECT count(*) FROM salesforce.lead WHERE id = %s", [arrived]) == [(1,)]
        ((status, message),) = fetch(
            warehouse_url,
            "SELECT status, message FROM sfsync.sync_runs WHERE direction = 'outbound' AND run_id = %s",
            [run.run_id],
        )
        assert status == "failed" and "UNKNOWN_EXCEPTION" in message, (
            "the push's failure is kept with its run"
        )
        org.admin("faults", method="DELETE")
        assert dag.test().state == DagRunState.SUCCESS
        assert fetch(
            warehouse_url, "SELECT id IS NOT NULL FROM salesforce.lead WHERE lastname = 'Stuck'"
        ) == [(True,)]


def test_one_value_bulk_cannot_carry_fails_alone_and_the_good_edits_land(
    sync, registry, private_org, warehouse_url
):
    registry(Lead="bulk_threshold: 10")
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        leads = [admin.Lead.create(sample_lead(Email=f"b{i}@example.com"))["id"] for i in range(52)]
        sync("lead")
        bad, null_like, good = leads[0], leads[1], leads[2:]
        execute(warehouse_url, "UPDATE salesforce.lead SET title = 'Bulk ' || id WHERE id = ANY(%s)", [good])
        execute(
            warehouse_url, "UPDATE salesforce.lead SET notes__c = repeat('x', 131073) WHERE id = %s", [bad]
        )
        execute(warehouse_url, "UPDATE salesforce.lead SET title = '#N/A' WHERE id = %s", [null_like])
        sync("lead")
        assert [admin.Lead.get(i)["Title"] for i in good] == [f"Bulk {i}" for i in good], (
            "the good edits landed"
        )
        assert admin.Lead.get(null_like)["Title"] == "#N/A", "a literal #N/A is a value, not Bulk's null"
        assert fetch(
            warehouse_url, "SELECT sfid, status_code, fields, transient FROM sfsync.sync_errors"
        ) == [(bad, "STRING_TOO_LONG", ["Notes__c"], False)], (
            "the bad record has its own permanent error, naming the field"
        )
        sync("lead")
        assert fetch(warehouse_url, "SELECT title FROM salesforce.lead WHERE id = %s", [null_like]) == [
            ("#N/A",)
        ]
        jobs = Salesforce(**org.salesforce_kwargs("integration")).restful("jobs/ingest")["records"]
        assert [j["state"] for j in jobs] == ["JobComplete"], "the 50 good edits went in one Bulk job"


def test_a_change_whose_row_is_gone_is_recorded_and_the_others_go_on(sync, private_org, warehouse_url):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        kept, gone = (admin.Lead.create(sample_lead())["id"] for _ in range(2))
        sync("lead")
        execute(
            warehouse_url, "UPDATE salesforce.lead SET title = 'Edited' WHERE id = ANY(%s)", [[kept, gone]]
        )
        ((row,),) = fetch(warehouse_url, "SELECT _sfsync_row_id FROM salesforce.lead WHERE id = %s", [gone])
        with psycopg.connect(warehouse_url, autocommit=True) as conn, conn.transaction():
            warehouse.as_the_sync(conn)  # the row vanishes under its pending change
            conn.execute("DELETE FROM salesforce.lead WHERE id = %s", [gone])
        sync("lead")
        assert admin.Lead.get(kept)["Title"] == "Edited"
        assert fetch(warehouse_url, "SELECT row_id, status_code, transient FROM sfsync.sync_errors") == [
            (row, "ROW_NOT_FOUND", False)
        ]
        sync("lead")  # it stays an error, and the push goes on without it


def test_two_pushes_of_one_object_at_once_send_each_change_once(sync, private_org, warehouse_url, caplog):
    registry = load_registry()
    entry = registry.get("Lead")
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead())
        sync("lead")
        execute(
            warehouse_url,
            "INSERT INTO salesforce.lead (lastname, email) SELECT 'Once', 'once' || n || '@example.com'"
            " FROM generate_series(1, 10) AS n",
        )
        # Slow answers keep the first push at work while the second one starts.
        assert org.admin("faults", {"kind": "latency", "latency_ms": 400, "route": "sobjects"})[0] == 200
        results: dict[str, dict] = {}

        def push(run_id: str) -> None:
            results[run_id] = run_step(writeback.push, run_id, entry, settings=registry.settings)

        with caplog.at_level("INFO", logger="sfsync.locks"):
            pushes = [threading.Thread(target=push, args=(f"manual__{n}",)) for n in range(2)]
            for thread in pushes:
                thread.start()
            for thread in pushes:
                thread.join()
        assert sorted(r["new"] for r in results.values()) == [0, 10], (
            "one push sent them, the other found none"
        )
        assert any("waiting for another outbound step of Lead" in m for m in caplog.messages)
        assert len(admin.query("SELECT Id FROM Lead WHERE LastName = 'Once'")["records"]) == 10


def test_of_two_rows_bound_for_one_survivor_the_edit_made_last_stays(sync, private_org, warehouse_url):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        merged, survivor = (admin.Lead.create(sample_lead(LastName=f"S{i}"))["id"] for i in range(2))
        sync("lead")
        assert org.admin("merge", {"masterId": survivor, "duplicateIds": [merged]})[0] == 200
        sync("lead")  # the warehouse knows of the merge: the merged row's edits go to the survivor
        ((merged_row,), (survivor_row,)) = fetch(
            warehouse_url,
            "SELECT _sfsync_row_id FROM salesforce.lead WHERE id = ANY(%s) ORDER BY id = %s",
            [[merged, survivor], survivor],
        )
        first, last = sorted([merged_row, survivor_row], reverse=True)  # the later edit on the lower row
        execute(
            warehouse_url, "UPDATE salesforce.lead SET title = 'First' WHERE _sfsync_row_id = %s", [first]
        )
        execute(warehouse_url, "UPDATE salesforce.lead SET title = 'Last' WHERE _sfsync_row_id = %s", [last])
        sync("lead")
        assert admin.Lead.get(survivor)["Title"] == "Last"
