"""The incremental sync, Salesforce to warehouse: real local org, real Postgres, real Airflow runs.

After every scenario the whole table is compared with what the integration user reads from the org
(queryAll: every visible record, every visible field, deletes flagged).
"""

from __future__ import annotations

import datetime as dt
import decimal

import psycopg
import pytest
from airflow.models import DagBag
from airflow.utils.state import DagRunState
from simple_salesforce import Salesforce

from localorg.testing import sample_lead

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    return DagBag(dag_folder="dags")


@pytest.fixture
def sync(dagbag, local_org, warehouse_url):
    """Run one sf_sync__<object> DAG and return the merge task's counters."""

    def run(table: str) -> dict:
        dag = dagbag.dags[f"sf_sync__{table}"]
        dagrun = dag.test()
        assert dagrun.state == DagRunState.SUCCESS, {
            ti.task_id: ti.state for ti in dagrun.get_task_instances()
        }
        with psycopg.connect(warehouse_url) as conn:
            return dict(
                zip(
                    ("status", "new", "updated", "deleted", "skipped", "api_calls"),
                    conn.execute(
                        "SELECT status, new, updated, deleted, skipped, api_calls FROM sfsync.sync_runs"
                        " WHERE direction = 'inbound' AND sobject ILIKE %s ORDER BY started_at DESC LIMIT 1",
                        [table],
                    ).fetchone(),
                    strict=True,
                )
            )

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
        assert (row["_sfsync_deleted_at"] is not None) == record["IsDeleted"]
    return len(records)


def test_lead_lifecycle_initial_changes_and_idle(sync, admin, hidden, sf, warehouse_url):
    visible = [admin.Lead.create(sample_lead(LastName=f"Visible{i}"))["id"] for i in range(5)]
    invisible = hidden.Lead.create(sample_lead(LastName="Secret"))["id"]

    first = sync("lead")
    assert first["status"] == "merged" and first["new"] >= 5
    assert assert_table_matches_org(sf, warehouse_url, "Lead") >= 5
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM salesforce.lead WHERE id = %s", [invisible]).fetchone() == (
            0,
        )
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'lead'"
            )
        }
    assert "internal_rating__c" not in columns, "a field hidden from the integration user never appears"

    admin.Lead.update(visible[0], {"Status": "Working - Contacted"})
    admin.Lead.delete(visible[1])
    changed = sync("lead")
    assert (changed["updated"], changed["deleted"]) == (1, 1)
    assert assert_table_matches_org(sf, warehouse_url, "Lead") >= 5

    idle = sync("lead")
    assert (idle["new"], idle["updated"], idle["deleted"]) == (0, 0, 0), "a second run changes nothing"
    assert assert_table_matches_org(sf, warehouse_url, "Lead") >= 5
