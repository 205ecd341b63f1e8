"""Real Airflow runs (dag.test()) that fail: the error names the connection, never its credentials."""

import json

import pytest
from airflow.models import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState

pytestmark = pytest.mark.integration


def without_retries(dag_id: str):
    """A freshly parsed DAG whose tasks fail at once: dag.test() would otherwise wait out the retry delays."""
    dag = DagBag(dag_folder="dags").dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    return dag


def task_states(dagrun) -> dict[str, TaskInstanceState]:
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def test_missing_connection_names_the_connection(airflow_db, monkeypatch, capsys, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_MARKETING_WAREHOUSE", raising=False)
    dagrun = without_retries("sf_sync__contact").test()
    assert dagrun.state == DagRunState.FAILED
    output = capsys.readouterr().out + caplog.text
    assert "marketing_warehouse" in output and "isn't defined" in output


def test_failed_login_prints_no_credential(airflow_db, monkeypatch, capsys, caplog):
    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("AIRFLOW_CONN_MARKETING_WAREHOUSE", f"postgres://sync:{secret}@127.0.0.1:1/warehouse")
    dagrun = without_retries("sf_sync__account").test()
    assert dagrun.state == DagRunState.FAILED
    output = capsys.readouterr().out + caplog.text
    assert "127.0.0.1" in output and "port 1 failed" in output
    assert secret not in output


def test_missing_salesforce_connection_names_the_connection(
    airflow_db, warehouse_url, monkeypatch, capsys, caplog
):
    monkeypatch.delenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", raising=False)
    dagrun = without_retries("sf_sync__lead").test()
    assert dagrun.state == DagRunState.FAILED
    assert task_states(dagrun)["extract_deltas"] == TaskInstanceState.FAILED
    output = capsys.readouterr().out + caplog.text
    assert "salesforce_default" in output and "isn't defined" in output


def test_failed_salesforce_login_prints_no_credential(
    airflow_db, warehouse_url, local_org, monkeypatch, capsys, caplog
):
    secret, token = "Wr0ng-Pa55word", "S3CRET-T0KEN"
    conn = json.loads(local_org.airflow_conn_json("integration"))
    conn["password"], conn["extra"]["security_token"] = secret, token
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(conn))
    dagrun = without_retries("sf_sync__lead").test()
    assert task_states(dagrun)["extract_deltas"] == TaskInstanceState.FAILED
    output = capsys.readouterr().out + caplog.text
    assert "INVALID_LOGIN" in output
    assert secret not in output and token not in output
