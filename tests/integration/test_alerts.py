"""Alerts through real DAG runs: a write-back error raises one, the notifier is called once with a message
naming the object and the cause, the alert clears when the error is gone, and a run that fails still fails."""

from __future__ import annotations

import psycopg
import pytest
from airflow.models import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from simple_salesforce import Salesforce

from localorg.testing import sample_lead

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
