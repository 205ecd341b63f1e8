"""Alerts through real DAG runs: a write-back error raises one, the notifier is called once with a message
naming the object and the cause, the alert clears when the error is gone, and a run that fails still fails."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from airflow.models import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from simple_salesforce import Salesforce

from localorg.testing import sample_lead
from sfsync import alerts
from sfsync.migrations import migrate
from sfsync.registry import load_registry
from sfsync_dev.notifiers import FileNotifier

pytestmark = pytest.mark.integration


def test_an_open_error_raises_one_alert_until_it_is_gone(
    airflow_db, registry, private_org, warehouse_url, tmp_path
):
    sent = tmp_path / "alerts.txt"
    registry(
        "alert_open_errors: 1, alert_lag_minutes: 600,"
        f" alert_notifier: sfsync_dev.notifiers.FileNotifier, alert_notifier_args: {{path: '{sent}'}}"
    )
    dag = DagBag(dag_folder="dags").dags["sf_sync__lead"]
    assert dag.task_dict["check_alerts"].is_teardown
    for task in dag.tasks:
        task.retries = 0

    def run() -> dict:
        dagrun = dag.test()
        return {ti.task_id: ti.state for ti in dagrun.get_task_instances()} | {"run": dagrun.state}

    def alerts() -> list[tuple]:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute(
                "SELECT cause, message, cleared_at IS NOT NULL FROM sfsync.alerts ORDER BY raised_at"
            ).fetchall()

    with private_org() as org:
        lead = Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead())["id"]
        assert run()["run"] == DagRunState.SUCCESS
        assert alerts() == [] and not sent.exists()

        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET title = 'VP' WHERE id = %s", [lead])
        assert org.admin("faults", {"kind": "lock_row", "count": 1})[0] == 200
        assert run()["check_alerts"] == TaskInstanceState.SUCCESS
        message = "Lead has 1 open write-back errors (alert at 1)"
        assert sent.read_text() == f"{message}\n"
        assert alerts() == [("errors", message, False)]

        run()  # the error waits out its backoff: still open, and no second notification
        assert sent.read_text() == f"{message}\n"

        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE sfsync.sync_errors SET next_attempt_at = now()")
        run()
        assert alerts() == [("errors", message, True)], "cleared once the edit landed"

        assert org.admin("faults", {"kind": "http_500", "route": "composite", "count": 5})[0] == 200
        states = run()
        assert states["extract_deltas"] == TaskInstanceState.FAILED
        assert states["check_alerts"] == TaskInstanceState.SUCCESS
        assert states["run"] == DagRunState.FAILED, "the alert check never hides a failed sync"


def refuse(self, context):
    raise ConnectionError("the chat service is down")


def test_a_notifier_that_fails_leaves_the_alert_to_the_next_check_and_one_check_notifies_once(
    registry, warehouse_url, tmp_path, monkeypatch
):
    sent = tmp_path / "alerts.txt"
    registry(
        "alert_open_errors: 1, alert_notifier: sfsync_dev.notifiers.FileNotifier,"
        f" alert_notifier_args: {{path: '{sent}'}}"
    )
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO sfsync.sync_errors (sobject, row_id, operation, status_code, message, transient,"
            " change_id) VALUES ('Lead', 1, 'update', 'UNABLE_TO_LOCK_ROW', 'locked', true, 1)"
        )
        with monkeypatch.context() as patched:
            patched.setattr(FileNotifier, "notify", refuse)
            with pytest.raises(ConnectionError):
                alerts.check(conn, load_registry(), "Lead", {})
        assert conn.execute("SELECT count(*) FROM sfsync.alerts").fetchone() == (0,), "not raised: try again"
        assert alerts.check(conn, load_registry(), "Lead", {}) == [
            "Lead has 1 open write-back errors (alert at 1)"
        ]
        assert alerts.check(conn, load_registry(), "Lead", {}) == [], "raised already"
        assert sent.read_text().count("\n") == 1


def test_two_checks_at_once_notify_once(registry, warehouse_url, tmp_path, monkeypatch):
    sent = tmp_path / "alerts.txt"
    registry(
        "alert_open_errors: 1, alert_notifier: sfsync_dev.notifiers.FileNotifier,"
        f" alert_notifier_args: {{path: '{sent}'}}"
    )
    others: list[threading.Thread] = []
    found: list[list[str]] = []
    notify = FileNotifier.notify

    def second_check_meanwhile(self, context):
        if not others:  # while this check notifies, a second run of the object checks too

            def check() -> None:
                with psycopg.connect(warehouse_url, autocommit=True) as other:
                    found.append(alerts.check(other, load_registry(), "Lead", {}))

            others.append(threading.Thread(target=check))
            others[0].start()
            time.sleep(0.5)
        notify(self, context)

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO sfsync.sync_errors (sobject, row_id, operation, status_code, message, transient,"
            " change_id) VALUES ('Lead', 1, 'update', 'UNABLE_TO_LOCK_ROW', 'locked', true, 1)"
        )
        monkeypatch.setattr(FileNotifier, "notify", second_check_meanwhile)
        assert len(alerts.check(conn, load_registry(), "Lead", {})) == 1
        others[0].join(timeout=30)
    assert found == [[]], "the second check found the alert raised"
    assert sent.read_text().count("\n") == 1
