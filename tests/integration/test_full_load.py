"""The full load: a whole seeded org copied in slices with Bulk API 2.0 within its API budget, backfill
runs that skip objects with nothing to copy, failures that are retried, and the hand-over to the
incremental DAGs with nothing missed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import psycopg
import pytest
import requests
from airflow.utils.state import DagRunState, TaskInstanceState
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceOperationError

from localorg.seed import Seeder, counts_for
from localorg.store import Org
from localorg.testing import sample_lead
from sfsync import full_load, load, salesforce, state
from sfsync.context import run_step
from sfsync.extract import extract
from sfsync.migrations import migrate
from sfsync.registry import load_registry

pytestmark = pytest.mark.integration

OBJECTS = [entry.sobject for entry in load_registry().enabled()]


def copy_all(run_id: str, objects: list[str], interval=None, job_records: int | None = None) -> list[dict]:
    """The three steps of a full load run, as its tasks call them."""
    pieces = run_step(full_load.plan, run_id, objects, interval, job_records)
    for piece in pieces:
        run_step(full_load.copy_slice, run_id, piece)
    run_step(full_load.finish, run_id)
    return pieces


@pytest.fixture
def migrated(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
    return warehouse_url


def test_full_load_dag_copies_every_object(dagbag, private_org, tmp_path, matches_org, warehouse_url):
    with private_org() as org:
        Seeder(Org(org.data_dir, org.definition), seed=11).run(counts_for(300))
        dag = dagbag.dags["sf_full_load"]
        dagrun = dag.test(run_conf={"job_records": 100})
        states = {(ti.task_id, ti.map_index): ti.state for ti in dagrun.get_task_instances()}
        assert dagrun.state == DagRunState.SUCCESS, states
        slices = [key for key in states if key[0] == "copy_slice"]
        assert len(slices) > len(OBJECTS), "one mapped task per object and slice"
        assert all(state == TaskInstanceState.SUCCESS for state in states.values())
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        for sobject in OBJECTS:
            matches_org(sobject, integration)
        with psycopg.connect(warehouse_url) as conn:
            handed = conn.execute(
                "SELECT count(*) FROM sfsync.sync_state WHERE watermark_source = 'full_load'"
            )
            assert handed.fetchone() == (len(OBJECTS),)
            sliced = conn.execute(
                "SELECT sobject, count(*), sum(rows), min(rows), max(rows) FROM sfsync.full_load_slices"
                " WHERE run_id = %s GROUP BY sobject",
                [dagrun.run_id],
            ).fetchall()
        for sobject, pieces, rows, fewest, most in sliced:  # the job_records param, with a tenth to spare
            share = int(rows) / pieces
            assert pieces == -(-int(rows) // 110), sobject
            assert pieces == 1 or share / 2 <= fewest <= most <= share * 1.5, sobject

        only = dag.test(run_conf={"objects": ["Lead", "Campaign"]})
        assert only.state == DagRunState.SUCCESS
        with psycopg.connect(warehouse_url) as conn:
            copied = conn.execute(
                "SELECT DISTINCT sobject FROM sfsync.full_load_slices WHERE run_id = %s ORDER BY 1",
                [only.run_id],
            ).fetchall()
        assert copied == [("Campaign",), ("Lead",)], "the objects param"
        for sobject in ("Campaign", "Lead"):  # the load run again over full tables: harmless
            matches_org(sobject, integration)


def test_changes_during_the_load_arrive_after_the_hand_over(sync, private_org, migrated, matches_org):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        store = Org(org.data_dir, org.definition)
        now = dt.datetime.now(dt.UTC)
        created = {}
        for days in (60, 10):  # two slices of three records
            at = int((now - dt.timedelta(days=days)).timestamp() * 1000)
            with store.write(store.users["admin@localorg.test"], at=at) as txn:
                created[days] = [
                    store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"Old{days}.{i}"))
                    for i in range(3)
                ]
        run_id = "manual__during"
        first, *rest = run_step(full_load.plan, run_id, ["Lead"], None, 3)
        assert rest, "more than one slice"
        run_step(full_load.copy_slice, run_id, first)
        # While the copy runs: records of the slice already copied change, and so do records of slices to
        # come; a record is created; the incremental DAG waits its turn.
        admin.Lead.update(created[60][0], {"Title": "Changed after its slice"})
        admin.Lead.delete(created[60][1])
        admin.Lead.update(created[10][0], {"Title": "Changed before its slice"})
        new = admin.Lead.create(sample_lead(LastName="NewDuringLoad"))["id"]
        assert sync("lead")["status"] is None, "the incremental run waited: no run of its own was recorded"
        for piece in rest:
            run_step(full_load.copy_slice, run_id, piece)
        run_step(full_load.finish, run_id)
        sync("lead")
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(migrated) as conn:
            rows = {
                lead: (title, deleted)
                for lead, title, deleted in conn.execute(
                    "SELECT id, title, isdeleted FROM salesforce.lead WHERE id = ANY(%s)",
                    [[created[60][0], created[60][1], created[10][0], new]],
                )
            }
        assert rows == {
            created[60][0]: ("Changed after its slice", False),
            created[60][1]: (rows[created[60][1]][0], True),
            created[10][0]: ("Changed before its slice", False),
            new: (None, False),
        }


def test_backfill_slices_copy_their_days_and_hand_over(private_org, migrated, matches_org):
    with private_org() as org:
        store = Org(org.data_dir, org.definition)
        days = [dt.datetime(2025, 3, d, tzinfo=dt.UTC) for d in (1, 2, 3)]
        for day in days:
            with store.write(
                store.users["admin@localorg.test"], at=int((day + dt.timedelta(hours=9)).timestamp() * 1000)
            ) as txn:
                for i in range(3):
                    store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"Day{day.day}-{i}"))
        for day in days:  # what `airflow backfill create` runs: one run per day, its data interval
            pieces = copy_all(f"backfill__{day:%Y-%m-%d}", ["Lead"], (day, day + dt.timedelta(days=1)))
            assert len(pieces) == 1
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(migrated) as conn:
            assert conn.execute(
                "SELECT watermark FROM sfsync.sync_state WHERE sobject = 'Lead'"
            ).fetchone() == (days[-1] + dt.timedelta(days=1),)
        again = copy_all("backfill__2025-03-02", ["Lead"], (days[1], days[2]))  # re-running a slice: harmless
        assert again and matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration"))) == 9


def test_a_failed_slice_is_retried_and_failures_are_reported(private_org, migrated, matches_org):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        for i in range(4):
            admin.Lead.create(sample_lead(LastName=f"Retry{i}"))
        run_id = "manual__retry"
        (piece,) = run_step(full_load.plan, run_id, ["Lead"])
        assert org.admin("faults", {"kind": "bulk_job_failed", "count": 1})[0] == 200
        with pytest.raises(SalesforceOperationError, match="Job failure"):
            run_step(full_load.copy_slice, run_id, piece)
        dropped = {"kind": "drop", "route": "jobs/query/[^/]+/results", "count": 1}  # a network error
        assert org.admin("faults", dropped)[0] == 200
        with pytest.raises(requests.exceptions.RequestException):  # the download dies halfway
            run_step(full_load.copy_slice, run_id, piece)
        assert run_step(full_load.copy_slice, run_id, piece)["rows"] == 4
        assert run_step(full_load.finish, run_id)["handed_over"] == {"Lead": 4}
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))

        assert org.admin("faults", {"kind": "bulk_job_failed", "count": 5})[0] == 200
        (piece,) = run_step(full_load.plan, "manual__broken", ["Lead"])
        with pytest.raises(SalesforceOperationError):
            run_step(full_load.copy_slice, "manual__broken", piece)
        with pytest.raises(RuntimeError, match=r"1 slices failed; clear them to copy them again:\nLead \["):
            run_step(full_load.finish, "manual__broken")
        org.admin("faults", None, method="DELETE")
        registry = load_registry()
        waited = run_step(extract, "manual__after", registry.get("Lead"), settings=registry.settings)
        assert waited["status"] == "extracted", (
            "a finished (even failed) full load no longer holds the sync back"
        )


def test_a_failing_slice_fails_alone_and_the_run_names_it(dagbag, private_org, migrated, matches_org):
    with private_org() as org:
        store = Org(org.data_dir, org.definition)
        now = dt.datetime.now(dt.UTC)
        for days in (100, 60, 10):  # three slices of two records
            at = int((now - dt.timedelta(days=days)).timestamp() * 1000)
            with store.write(store.users["admin@localorg.test"], at=at) as txn:
                for i in range(2):
                    store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"Slice{days}.{i}"))
        dag = dagbag.dags["sf_full_load"]
        for task in dag.tasks:
            task.retries = 0  # the failure stands: dag.test() would sit out the retry delays
        assert org.admin("faults", {"kind": "bulk_job_failed", "count": 1})[0] == 200
        dagrun = dag.test(run_conf={"objects": ["Lead"], "job_records": 2})  # dag.test keeps an earlier conf
        states = {(ti.task_id, ti.map_index): ti.state for ti in dagrun.get_task_instances()}
        copies = sorted(state for (task_id, _), state in states.items() if task_id == "copy_slice")
        assert copies == [TaskInstanceState.FAILED] + [TaskInstanceState.SUCCESS] * (len(copies) - 1)
        assert len(copies) >= 3, "the other slices went on"
        assert states[("hand_over", -1)] == TaskInstanceState.FAILED and dagrun.state == DagRunState.FAILED
        with psycopg.connect(migrated) as conn:
            (failed,) = conn.execute(
                "SELECT sobject, slice_start, slice_end FROM sfsync.full_load_slices"
                " WHERE run_id = %s AND status = 'failed'",
                [dagrun.run_id],
            ).fetchall()
        # Cleared, the failed slice is copied again, and the hand-over goes through.
        piece = {"sobject": failed[0], "start": failed[1].isoformat(), "end": failed[2].isoformat()}
        run_step(full_load.copy_slice, dagrun.run_id, piece)
        assert run_step(full_load.finish, dagrun.run_id)["handed_over"] == {"Lead": 6}
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_a_plan_that_failed_halfway_plans_the_rest_and_an_unplanned_run_fails_its_hand_over(
    private_org, migrated, monkeypatch
):
    with private_org() as org:
        Salesforce(**org.salesforce_kwargs("admin")).Contact.create({"LastName": "Planned"})
        run_id = "manual__halfway"
        # Five objects are described and counted in one call: Lead, sixth, in the next, which fails.
        objects = ["Contact", "Campaign", "CampaignMember", "Account", "User", "Lead"]
        original = salesforce.Salesforce.describe_and_count

        def lead_fails(self, sobjects, counts):
            if "Lead" in sobjects:
                org.admin("faults", {"kind": "http_500", "route": "composite", "count": 100})
            return original(self, sobjects, counts)

        with monkeypatch.context() as patched, pytest.raises(Exception, match="500"):
            patched.setattr(salesforce.Salesforce, "describe_and_count", lead_fails)
            run_step(full_load.plan, run_id, objects)
        org.admin("faults", None, method="DELETE")
        planned_rows = (
            "SELECT sobject, slice_start, watermark, status FROM sfsync.full_load_slices WHERE run_id = %s"
            " ORDER BY sobject, slice_start"
        )
        with psycopg.connect(migrated) as conn:
            planned = conn.execute(planned_rows, [run_id]).fetchall()
        assert {sobject for sobject, *_ in planned} == set(objects[:5])

        pieces = run_step(full_load.plan, run_id, objects)
        assert {p["sobject"] for p in pieces} == {"Contact", "User"}, "the others have nothing to copy"
        with psycopg.connect(migrated) as conn:
            again = conn.execute(planned_rows, [run_id]).fetchall()
        assert {sobject for sobject, *_ in again} == set(objects), "the retry plans what was missing"
        assert [row for row in again if row[0] != "Lead"] == planned, "and keeps what it had planned"

        with pytest.raises(RuntimeError, match="has no slices: its plan_slices task did not succeed"):
            run_step(full_load.finish, "manual__never_planned")


def test_airflow_backfill_plans_one_full_load_run_per_month(airflow_db):
    def airflow(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], check=True, capture_output=True, text=True
        ).stdout

    airflow("dags", "reserialize")
    window = ["--from-date", "2025-01-01", "--to-date", "2025-03-01"]
    planned = airflow("backfill", "create", "--dag-id", "sf_full_load", *window, "--dry-run")
    months = ("2024-12-01", "2025-01-01", "2025-02-01", "2025-03-01", "2025-01-02")
    runs = [month for month in months if f"{month} 00:00" in planned]
    assert runs == list(months[1:4]), "one run per month (the registry's full_load_interval), no more"


class OrgCalls:
    """The API calls the org counts (its own usage counter, read without a call), and the logins of the
    sync's clients."""

    def __init__(self, org, monkeypatch) -> None:
        self.store, self.logins = Org(org.data_dir, org.definition), 0
        self.start = self.store.api_usage()
        original = salesforce.Salesforce.__init__

        def login(client, *args, **kwargs):
            self.logins += 1
            original(client, *args, **kwargs)

        monkeypatch.setattr(salesforce.Salesforce, "__init__", login)

    def spent(self) -> int:
        return self.store.api_usage() - self.start


def test_a_full_load_of_every_object_stays_within_its_api_budget(
    private_org, migrated, monkeypatch, matches_org
):
    with private_org() as org:
        records = sum(Seeder(Org(org.data_dir, org.definition), seed=5).run(counts_for(60)).values())
        calls = OrgCalls(org, monkeypatch)
        pieces = copy_all("manual__budget", [])
        assert len(pieces) == len(OBJECTS), "every object fits in one Bulk job"
        # At most 5 calls an object and 5 a million records, counted by the org: describing and counting
        # five objects is one call, and each object's job is created, polled and read in one page.
        assert calls.spent() <= 5 * len(OBJECTS) + 5 * records / 1e6
        assert calls.spent() <= -(-len(OBJECTS) // 5) + 3 * len(OBJECTS) + 2, "no more than the above"
        assert calls.logins == 1 + len(pieces), "one login a task: the plan's and each slice's"
        assert matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration"))) > 0


def test_a_backfill_run_copies_only_objects_with_records_created_in_its_interval(
    private_org, migrated, monkeypatch, matches_org
):
    with private_org() as org:
        leads = _seed_days(org, 2, 3)  # in March 2025; nothing else was ever created
        march = (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
        run_id = "backfill__2025-03-01"
        calls = OrgCalls(org, monkeypatch)
        pieces = run_step(full_load.plan, run_id, [], march)
        assert [p["sobject"] for p in pieces] == ["Lead"]
        assert calls.spent() == -(-len(OBJECTS) // 5), "a describe and a count for five objects a call"
        with psycopg.connect(migrated, autocommit=True) as conn:
            assert state.full_load_running(conn, "Lead") == run_id
            assert state.full_load_running(conn, "Contact") is None, "a skipped object holds nothing back"
        registry = load_registry()
        pulled = run_step(extract, "manual__beside", registry.get("Contact"), settings=registry.settings)
        assert pulled["status"] == "extracted", "its incremental DAG runs during the load"
        run_step(full_load.copy_slice, run_id, pieces[0])
        handed = run_step(full_load.finish, run_id)["handed_over"]
        assert handed == {sobject: 6 if sobject == "Lead" else 0 for sobject in OBJECTS}
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(migrated) as conn:
            watermarks = dict(conn.execute("SELECT sobject, watermark FROM sfsync.sync_state").fetchall())
        assert watermarks["Lead"] == march[1] and len(leads) == 6
        assert watermarks["Contact"] == march[1], "handed over like an object whose copy found nothing"


def test_a_field_gone_between_plan_and_copy_is_left_out_of_the_copy(private_org, migrated, monkeypatch):
    with private_org() as org:
        _seed_days(org, 1, 2)
        run_id = "manual__vanished"
        (piece,) = run_step(full_load.plan, run_id, ["Lead"])
        planned = state.slice_fields
        monkeypatch.setattr(state, "slice_fields", lambda *args: [*planned(*args), "Gone__c"])
        assert run_step(full_load.copy_slice, run_id, piece)["rows"] == 2
        with psycopg.connect(migrated) as conn:
            copied = "SELECT count(*) FROM salesforce.lead WHERE lastname IS NOT NULL"
            assert conn.execute(copied).fetchone() == (2,)


def _whole_lead_table(conn) -> list[tuple]:
    """Every row and column of salesforce.lead; the sync's clocks as whether each is that of the row's
    sync, as the merge sets them."""
    cursor = conn.execute("SELECT * FROM salesforce.lead ORDER BY _sfsync_row_id")
    names = [c.name for c in cursor.description]
    synced, deleted, flag = (names.index(n) for n in ("_sfsync_synced_at", "_sfsync_deleted_at", "isdeleted"))
    return [
        (*row[:synced], row[synced] is not None, row[deleted] == (row[synced] if row[flag] else None))
        for row in cursor.fetchall()
    ]


def _seed_days(org, days: int, per_day: int) -> list[str]:
    store = Org(org.data_dir, org.definition)
    ids = []
    for day in range(days):
        moment = dt.datetime(2025, 3, 1 + day, 9, tzinfo=dt.UTC)
        with store.write(store.users["admin@localorg.test"], at=int(moment.timestamp() * 1000)) as txn:
            ids += [
                store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"D{day}-{i}"))
                for i in range(per_day)
            ]
    return ids


def test_slices_copy_straight_into_the_table_as_staging_and_merging_would(
    private_org, migrated, matches_org, monkeypatch
):
    with private_org() as org, psycopg.connect(migrated, autocommit=True) as conn:
        ids = _seed_days(org, 3, 4)
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.delete(ids[0])
        admin.Lead.delete(ids[5])
        interval = (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 4, tzinfo=dt.UTC))
        pieces = run_step(full_load.plan, "manual__fast", ["Lead"], interval, 4)
        copied = [run_step(full_load.copy_slice, "manual__fast", p) for p in pieces]
        assert [(c["rows"], c["new"], c["deleted"]) for c in copied] == [(4, 3, 1), (4, 3, 1), (4, 4, 0)]
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        fast = _whole_lead_table(conn)
        assert conn.execute("SELECT count(*) FROM sfsync.outbox").fetchone() == (0,)

        conn.execute("DROP TABLE salesforce.lead")
        with monkeypatch.context() as patched:  # every slice staged and merged, as before the fast path

            def collide(*args):
                raise psycopg.errors.UniqueViolation("as if a record were there")

            patched.setattr(load, "copy_new", collide)
            general = copy_all("manual__general", ["Lead"], interval, job_records=4)
        assert len(general) == 3 and _whole_lead_table(conn) == fast


def test_a_slice_retried_after_a_crash_in_or_after_its_copy(private_org, migrated, monkeypatch):
    with private_org() as org, psycopg.connect(migrated, autocommit=True) as conn:
        ids = _seed_days(org, 1, 5)
        Salesforce(**org.salesforce_kwargs("admin")).Lead.delete(ids[0])
        interval = (dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 2, tzinfo=dt.UTC))
        run_id = "manual__crash"
        (piece,) = run_step(full_load.plan, run_id, ["Lead"], interval)

        def crash(*args, **kwargs):
            raise RuntimeError("worker lost after the COPY, before the commit")

        with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="worker lost"):
            patched.setattr(full_load, "_done", crash)
            run_step(full_load.copy_slice, run_id, piece)
        assert conn.execute("SELECT count(*) FROM salesforce.lead").fetchone() == (0,)
        first = run_step(full_load.copy_slice, run_id, piece)
        assert (first["rows"], first["new"], first["deleted"]) == (5, 4, 1)
        table = _whole_lead_table(conn)
        state = "SELECT status, rows FROM sfsync.full_load_slices WHERE run_id = %s"
        assert conn.execute(state, [run_id]).fetchall() == [("done", 5)]

        # Committed, but the worker died before reporting: the retry meets its own rows and merges them.
        calls = "SELECT api_calls FROM sfsync.full_load_slices WHERE run_id = %s"
        (spent,) = conn.execute(calls, [run_id]).fetchone()
        reads, original = [], salesforce.Salesforce._bulk_pages
        monkeypatch.setattr(
            salesforce.Salesforce,
            "_bulk_pages",
            lambda self, *args: reads.append(args) or original(self, *args),
        )
        again = run_step(full_load.copy_slice, run_id, piece)
        assert (again["rows"], again["skipped"]) == (5, 5)
        assert len(reads) == 2, "the results were read again, by locator, to stage them"
        assert conn.execute(calls, [run_id]).fetchone() == (spent + again["api_calls"],), "the re-read counts"
        assert _whole_lead_table(conn) == table
        assert conn.execute(state, [run_id]).fetchall() == [("done", 5)]
        assert run_step(full_load.finish, run_id)["handed_over"] == {"Lead": 5}
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sfsync' AND tablename LIKE 'stage%'"
        ).fetchone() == (0,)
