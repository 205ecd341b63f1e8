"""The demo's plumbing: the embedded warehouse and loading airflow_settings.yaml into Airflow."""

from pathlib import Path

import psycopg
import pytest

from sfsync.defaults import SALESFORCE_CONN_ID, SALESFORCE_EVENTS_CONN_ID, SALESFORCE_POOL, WAREHOUSE_CONN_ID
from sfsync_dev.airflow_settings import load_settings, read_settings
from sfsync_dev.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration

SETTINGS = Path(__file__).resolve().parents[2] / "airflow_settings.yaml"


def test_embedded_warehouse_starts_reuses_and_keeps_its_data(tmp_path, unused_port):
    warehouse = EmbeddedWarehouse(tmp_path / "pg", unused_port)
    try:
        url = warehouse.start().url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        again = EmbeddedWarehouse(tmp_path / "pg", unused_port + 1).start()
        assert again.port == unused_port, "a second start reuses the running server"
        warehouse.stop()
        assert warehouse.running_port() is None
        with psycopg.connect(warehouse.start().url()) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    finally:
        warehouse.stop()


def test_committed_settings_hold_local_defaults_only():
    settings = read_settings(SETTINGS)
    salesforce_ids = {SALESFORCE_CONN_ID, SALESFORCE_EVENTS_CONN_ID}
    assert {c.conn_id for c in settings.connections} == salesforce_ids | {WAREHOUSE_CONN_ID}
    assert [p.pool_name for p in settings.pools] == [SALESFORCE_POOL]
    for salesforce in (c for c in settings.connections if c.conn_id in salesforce_ids):
        assert salesforce.conn_login.endswith("@localorg.test"), salesforce.conn_id
        assert salesforce.conn_extra["domain"].startswith("127."), salesforce.conn_id
    warehouse = next(c for c in settings.connections if c.conn_id == WAREHOUSE_CONN_ID)
    assert (warehouse.conn_host, warehouse.conn_port) == ("127.0.0.1", 54329)


@pytest.fixture
def loaded_settings(airflow_db):
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    yield load_settings(SETTINGS)
    with create_session() as session:  # other tests rely on these connections being absent
        session.query(Connection).filter(
            Connection.conn_id.in_([SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID])
        ).delete()
        session.query(Pool).filter(Pool.pool == SALESFORCE_POOL).delete()


def test_settings_load_into_airflow_idempotently(loaded_settings):
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool

    load_settings(SETTINGS)  # a second load replaces, never duplicates
    salesforce = Connection.get_connection_from_secrets(SALESFORCE_CONN_ID)
    assert salesforce.conn_type == "salesforce"
    assert salesforce.extra_dejson["version"] == "59.0", "version must stay a string for simple-salesforce"
    warehouse = Connection.get_connection_from_secrets(WAREHOUSE_CONN_ID)
    assert (warehouse.conn_type, warehouse.host, warehouse.port, warehouse.schema) == (
        "postgres",
        "127.0.0.1",
        54329,
        "warehouse",
    )
    assert Pool.get_pool(SALESFORCE_POOL).slots == 4


def test_settings_with_an_unknown_key_are_refused(tmp_path):
    bad = tmp_path / "airflow_settings.yaml"
    bad.write_text(
        "airflow:\n  connections:\n    - conn_id: x\n      conn_type: postgres\n      con_host: y\n"
    )
    with pytest.raises(ValueError, match="con_host"):
        read_settings(bad)
