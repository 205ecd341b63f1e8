"""Fixtures for syncs against the local org: run a DAG, point it at another org or registry, and
compare a whole table with what the integration user reads from Salesforce."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from pathlib import Path

import psycopg
import pytest
from airflow.models import DagBag
from airflow.utils.state import DagRunState
from simple_salesforce import Salesforce

from localorg.testing import changed_org_file, running_org
from sfsync.registry import DEFAULT_REGISTRY, load_registry


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    return DagBag(dag_folder="dags")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Point the running tasks at a registry with other settings (the DAG shapes stay the same)."""

    def write(settings: str = "", **entries: str) -> None:
        lines = ["objects:"]
        for entry in load_registry(DEFAULT_REGISTRY).objects:
            extra = f", {entries[entry.sobject]}" if entry.sobject in entries else ""
            lines.append(f"  - {{sobject: {entry.sobject}, direction: {entry.direction}{extra}}}")
        path = tmp_path / "objects.yaml"
        path.write_text("\n".join(lines) + ("\nsettings: {" + settings + "}\n" if settings else "\n"))
        monkeypatch.setenv("SFSYNC_REGISTRY", str(path))

    return write


@pytest.fixture
def sync(dagbag, local_org, warehouse_url):
    """Run one sf_sync__<object> DAG and return the merge task's counters."""

    def run(table: str) -> dict:
        dag = dagbag.dags[f"sf_sync__{table}"]
        for task in dag.tasks:
            task.retries = 0  # fail at once: dag.test() would sit out the retry delays
        dagrun = dag.test()
        assert dagrun.state == DagRunState.SUCCESS, {
            ti.task_id: ti.state for ti in dagrun.get_task_instances()
        }
        names = ("status", "new", "updated", "deleted", "skipped", "api_calls")
        with psycopg.connect(warehouse_url) as conn:
            row = conn.execute(
                f"SELECT {', '.join(names)} FROM sfsync.sync_runs WHERE direction = 'inbound'"
                " AND run_id = %s",
                [dagrun.run_id],
            ).fetchone()
        return dict(zip(names, row or (None,) * len(names), strict=True))

    return run


def _same(sf_value, pg_value) -> bool:
    if sf_value is None or pg_value is None:
        return sf_value is None and pg_value is None
    if isinstance(pg_value, dt.datetime):
        return pg_value == dt.datetime.strptime(sf_value, "%Y-%m-%dT%H:%M:%S.%f%z")
    if isinstance(pg_value, dt.date):
        return pg_value.isoformat() == sf_value
    if isinstance(pg_value, decimal.Decimal | int | float) and not isinstance(pg_value, bool):
        return decimal.Decimal(str(sf_value)) == decimal.Decimal(str(pg_value))
    return sf_value == pg_value


@pytest.fixture
def matches_org(sf, warehouse_url):
    """``matches_org("Lead")`` asserts the table equals the org, as the integration user reads it."""
    return lambda sobject, client=None: assert_table_matches_org(client or sf, warehouse_url, sobject)


@pytest.fixture
def private_org(tmp_path, monkeypatch):
    """Start a separate org (optionally from another org definition) and make it ``salesforce_default``."""

    @contextlib.contextmanager
    def start(data_dir: Path | None = None, org_file: Path | None = None):
        kwargs = {"org_file": org_file} if org_file else {}
        with running_org(data_dir or tmp_path / "org", **kwargs) as org:
            monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", org.airflow_conn_json("integration"))
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
            yield org

    return start


@pytest.fixture
def org_definition(tmp_path):
    """``org_definition(change)``: the default org definition with ``change(document)`` applied, as a file
    for ``private_org``."""

    return lambda change: changed_org_file(tmp_path / "org.yaml", change)


def assert_table_matches_org(sf: Salesforce, warehouse_url: str, sobject: str) -> int:
    """Every record and field the integration user sees equals its warehouse row; no other row is live."""
    fields = [
        f["name"]
        for f in getattr(sf, sobject).describe()["fields"]
        if f["type"] not in ("address", "location")
    ]
    records = {
        r["Id"]: r
        for r in sf.query_all(f"SELECT {', '.join(fields)} FROM {sobject}", include_deleted=True)["records"]
    }
    with psycopg.connect(warehouse_url) as conn:
        cursor = conn.execute(f'SELECT * FROM salesforce."{sobject.lower()}" WHERE id IS NOT NULL')
        names = [c.name for c in cursor.description]
        rows = {row[names.index("id")]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    live = {i for i, r in rows.items() if not r["isdeleted"] or i in records}
    assert set(records) == live, (
        "the table holds exactly the visible records (purged ones only as flagged rows)"
    )
    for record_id, record in records.items():
        row = rows[record_id]
        for field in fields:
            assert _same(record[field], row[field.lower()]), (
                sobject,
                record_id,
                field,
                record[field],
                row[field.lower()],
            )
        assert (row["_sfsync_deleted_at"] is not None) == record.get("IsDeleted", False)
    return len(records)
