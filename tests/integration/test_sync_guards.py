"""The guards around a run: the API budget lets go once usage drops, work on one object never runs twice at
once, runs that never finished are closed, and registry mistakes are named."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from simple_salesforce import Salesforce

from localorg.testing import running_org, sample_lead
from sfsync import locks
from sfsync.__main__ import check
from sfsync.context import run_step
from sfsync.defaults import SALESFORCE_CONN_ID
from sfsync.extract import extract
from sfsync.migrations import migrate
from sfsync.reconcile import reconcile
from sfsync.registry import SyncObject, UnknownFieldError, load_registry
from sfsync.salesforce import SalesforceError

pytestmark = pytest.mark.integration


def fetch(url: str, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_the_budget_guard_reads_the_org_again_and_lets_go_once_usage_drops(sync, private_org, warehouse_url):
    with private_org():
        sync("lead")
        with psycopg.connect(warehouse_url) as conn:  # a reading over the budget, taken ten minutes ago
            conn.execute(
                "UPDATE sfsync.api_usage SET used = max * 0.95, seen_at = now() - interval '10 minutes'"
            )
        resumed = sync("lead")
    assert resumed["status"] == "merged", "the org reports little usage now: the sync resumes"
    ((used, limit),) = fetch(warehouse_url, "SELECT used, max FROM sfsync.api_usage")
    assert used < limit * 0.8


def test_the_budget_guard_holds_while_the_org_confirms_it_and_reads_it_at_most_once_a_run(
    sync, tmp_path, monkeypatch, warehouse_url
):
    with running_org(tmp_path / "org", api_limit=40) as org:
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", org.airflow_conn_json("integration"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        sync("lead")
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        while admin.api_usage.get("api-usage") is None or admin.api_usage["api-usage"].used < 35:
            admin.query("SELECT Id FROM Lead LIMIT 1")  # others spend the org's budget meanwhile
        with psycopg.connect(warehouse_url) as conn:
            conn.execute("UPDATE sfsync.api_usage SET used = max, seen_at = now() - interval '10 minutes'")
        confirmed = sync("lead")
        again = sync("lead")
    assert (confirmed["status"], confirmed["api_calls"]) == ("skipped", 1), "one call to read the usage"
    assert (again["status"], again["api_calls"]) == ("skipped", 0), "a fresh reading is trusted"


def test_a_step_waits_for_the_one_that_holds_its_object_and_says_so(local_org, warehouse_url, caplog):
    """A reconcile beside a pull would flag the records created meanwhile as deleted: it waits."""
    with (
        psycopg.connect(warehouse_url, autocommit=True) as holder,
        psycopg.connect(warehouse_url, autocommit=True) as other,
    ):
        migrate(holder)
        order: list[str] = []

        def reconcile_like() -> None:
            with locks.holding(other, "Lead", "inbound"):
                order.append("second")

        with caplog.at_level("INFO", logger="sfsync.locks"):
            with locks.holding(holder, "Lead", "inbound"):
                waiter = threading.Thread(target=reconcile_like)
                waiter.start()
                time.sleep(0.5)
                order.append("first")
            waiter.join(10)
        assert order == ["first", "second"]
        assert any("waiting for another inbound step of Lead" in m for m in caplog.messages)
        with locks.holding(holder, "Lead", "inbound", shared=True):  # slices share the lock among themselves
            with locks.holding(other, "Lead", "inbound", shared=True):
                pass
        with locks.holding(holder, "Lead", "outbound"):  # the push has its own
            with locks.holding(other, "Lead", "inbound"):
                pass


def test_a_run_that_never_merged_is_marked_abandoned_and_its_staging_dropped(
    sync, private_org, warehouse_url
):
    registry = load_registry()
    with private_org() as org:
        Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())
        sync("lead")
        Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())
        extracted = run_step(extract, "manual__died", registry.get("Lead"), settings=registry.settings)
        staging = extracted["staging"]
        assert fetch(warehouse_url, "SELECT to_regclass(%s) IS NOT NULL", [f"sfsync.{staging}"]) == [(True,)]
        with psycopg.connect(warehouse_url, autocommit=True) as conn:  # and a push killed halfway
            conn.execute(
                "INSERT INTO sfsync.sync_runs (run_id, sobject, direction, status, started_at)"
                " VALUES ('manual__died', 'Lead', 'outbound', 'pushing', now())"
            )
            conn.execute("UPDATE salesforce.lead SET title = 'Pushed'")
            younger = sync("lead")  # a run younger than a DAG run may be another deployment's, still at work
            assert conn.execute(
                "SELECT count(*) FROM sfsync.sync_runs WHERE run_id = 'manual__died' AND status = 'abandoned'"
            ).fetchone() == (0,)
            conn.execute("UPDATE sfsync.sync_runs SET started_at = now() - interval '61 minutes'")
            admin = Salesforce(**org.salesforce_kwargs("admin"))
            admin.Lead.create(sample_lead())
            conn.execute("UPDATE salesforce.lead SET title = 'Pushed again'")
        ran = sync("lead")
    assert younger["new"] == 1 and ran["new"] == 1, "later runs read the window the dead one never merged"
    assert fetch(
        warehouse_url,
        "SELECT direction, status FROM sfsync.sync_runs WHERE run_id = 'manual__died' ORDER BY 1",
    ) == [("inbound", "abandoned"), ("outbound", "abandoned")]
    assert fetch(warehouse_url, "SELECT to_regclass(%s)", [f"sfsync.{staging}"]) == [(None,)]


def test_registry_mistakes_are_named_at_run_time(sync, registry, private_org, warehouse_url):
    settings = load_registry().settings
    with private_org():
        registry(Lead="exclude: [Emial]")
        sync("lead")
        ((message,),) = fetch(
            warehouse_url, "SELECT message FROM sfsync.sync_runs WHERE direction = 'inbound'"
        )
        assert "Emial" in message and "Lead" in message, "a misspelt exclude is a warning in the run summary"

        typo = SyncObject(sobject="Lead", direction="bidirectional", fields=("Id", "SystemModstamp", "Emial"))
        with pytest.raises(UnknownFieldError, match="Emial.*did you mean 'Email'"):
            run_step(extract, "manual__typo", typo, settings=settings)

        custom = SyncObject(sobject="Subscripton__c", direction="inbound")
        with pytest.raises(SalesforceError, match="Subscripton__c"):
            run_step(extract, "manual__custom", custom, settings=settings)


def test_the_registry_check_names_fields_and_objects_the_org_lacks(local_org, tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(
        "objects:\n"
        "  - {sobject: Lead, direction: bidirectional, exclude: [Faxx]}\n"
        "  - {sobject: Contact, direction: bidirectional, fields: [Id, SystemModstamp, Emial]}\n"
        "  - {sobject: Subscripton__c, direction: inbound}\n"
    )
    problems = check(str(path), SALESFORCE_CONN_ID)
    assert len(problems) == 2
    assert "Contact: fields names 'Emial'" in problems[0] and "did you mean 'Email'" in problems[0]
    assert problems[1].startswith("Subscripton__c: ")


def test_a_pull_during_a_full_load_returns_at_once_instead_of_queuing_for_the_lock(
    sync, private_org, warehouse_url
):
    """A queued exclusive request would hold the pull's pool slot and queue the next slices behind it."""
    registry = load_registry()
    with private_org():
        sync("lead")
        with psycopg.connect(warehouse_url, autocommit=True) as slice_conn:
            slice_conn.execute(
                "INSERT INTO sfsync.full_load_slices (run_id, sobject, slice_start, slice_end, watermark)"
                " VALUES ('manual__load', 'Lead', now() - interval '30 days', now(), now())"
            )
            with locks.holding(slice_conn, "Lead", "inbound", shared=True):  # a slice at work
                started = time.monotonic()
                done = run_step(extract, "manual__during", registry.get("Lead"), settings=registry.settings)
                reconciled = run_step(
                    reconcile, "manual__during", registry.get("Lead"), force=True, settings=registry.settings
                )
                assert time.monotonic() - started < 5
    assert done["status"] == reconciled["status"] == "waiting for full load manual__load"
