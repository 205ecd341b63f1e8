"""Test settings and the services the suite needs.

Airflow runs from a project-local home under ``.sfsync/test`` with its own SQLite metadata database, so the
suite never touches the demo's Airflow. The warehouse is an embedded PostgreSQL under ``.sfsync/test``,
started for the session and removed at its end, unless ``SFSYNC_TEST_POSTGRES_URL`` names another server;
every test that needs one gets a fresh database on it. Local orgs run on free ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
TEST_HOME = PROJECT / ".sfsync" / "test"

# Before anything imports airflow: its configuration is read once, at import.
os.environ["AIRFLOW_HOME"] = str(TEST_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_") or n == "SFSYNC_REGISTRY"]:
    del os.environ[name]  # nothing may "magically" work from the developer's shell


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """An up-to-date Airflow metadata database, for dag.test()."""
    (TEST_HOME / "airflow").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a Postgres server whose user may create databases."""
    if url := os.environ.get("SFSYNC_TEST_POSTGRES_URL"):
        yield url
        return
    from sfsync_dev.embedded import EmbeddedWarehouse

    # One server per test session, so two sessions at once (a developer's and a helper's) never share one.
    server = EmbeddedWarehouse(TEST_HOME / f"warehouse-{os.getpid()}", _free_port())
    try:
        yield server.start().url("postgres")
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture
def warehouse_url(postgres_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database (as a libpq conninfo), also the ``marketing_warehouse`` Airflow connection."""
    from urllib.parse import quote

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"sfsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    p = conninfo_to_dict(postgres_server)
    auth = quote(str(p["user"]), safe="") + (
        ":" + quote(str(p["password"]), safe="") if p.get("password") else ""
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKETING_WAREHOUSE", f"postgres://{auth}@{p['host']}:{p.get('port', 5432)}/{name}"
    )
    yield make_conninfo(postgres_server, dbname=name)
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def local_org(tmp_path_factory: pytest.TempPathFactory):
    """A running local org; ``salesforce_default`` is its integration (sync) user, over verified TLS."""
    from localorg.testing import running_org

    with running_org(tmp_path_factory.mktemp("localorg")) as org, pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", org.airflow_conn_json("integration"))
        yield org


@pytest.fixture(scope="session")
def connect(local_org):
    """A logged-in simple-salesforce client (SOAP login through the domain trick) for a user of the org."""
    from simple_salesforce import Salesforce

    return lambda user: Salesforce(**local_org.salesforce_kwargs(user))


@pytest.fixture(scope="session")
def sf(connect):
    """The integration (sync) user: what it reads is what the warehouse must hold."""
    return connect("integration")


@pytest.fixture(scope="session")
def admin(connect):
    """A System Administrator, who sees and changes everything."""
    return connect("admin")


@pytest.fixture(scope="session")
def hidden(connect):
    """A user in the Confidential role, whose records the integration user must not see."""
    return connect("hidden")
