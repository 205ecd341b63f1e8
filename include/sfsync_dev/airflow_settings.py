"""Load ``airflow_settings.yaml`` (the Astro CLI format) into an Airflow metadata database.

``astro dev start`` reads the file itself; ``make run`` uses this module instead, so the demo needs no
Astro CLI. Existing connections, pools and variables of the same name are replaced, so loading is
idempotent.

    python -m sfsync_dev.airflow_settings airflow_settings.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionSetting(_Strict):
    conn_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    conn_type: str
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = None
    conn_extra: dict[str, Any] | None = None


class PoolSetting(_Strict):
    pool_name: str
    pool_slot: int = Field(ge=1)
    pool_description: str = ""


class VariableSetting(_Strict):
    variable_name: str
    variable_value: str


class AirflowSection(_Strict):
    connections: list[ConnectionSetting] = []
    pools: list[PoolSetting] = []
    variables: list[VariableSetting] = []


class Settings(_Strict):
    airflow: AirflowSection


def read_settings(path: Path) -> AirflowSection:
    """Parse and validate the file."""
    return Settings.model_validate(yaml.safe_load(path.read_text())).airflow


def load_settings(path: Path) -> AirflowSection:
    """Write the file's connections, pools and variables into the configured metadata database."""
    # The metadata database's ORM models (airflow.sdk's Connection and Variable are task-side views).
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    settings = read_settings(path)
    with create_session() as session:
        for c in settings.connections:
            session.query(Connection).filter(Connection.conn_id == c.conn_id).delete()
            session.add(
                Connection(
                    conn_id=c.conn_id,
                    conn_type=c.conn_type,
                    host=c.conn_host,
                    schema=c.conn_schema,
                    login=c.conn_login,
                    password=c.conn_password,
                    port=c.conn_port,
                    extra=json.dumps(c.conn_extra) if c.conn_extra else None,
                )
            )
    for p in settings.pools:
        Pool.create_or_update_pool(p.pool_name, p.pool_slot, p.pool_description, include_deferred=False)
    for v in settings.variables:
        Variable.set(v.variable_name, v.variable_value)
    return settings


def main(argv: list[str] | None = None) -> int:
    (path,) = argv if argv is not None else sys.argv[1:]
    settings = load_settings(Path(path))
    names = ", ".join(c.conn_id for c in settings.connections)
    print(
        f"loaded {len(settings.connections)} connections ({names}), {len(settings.pools)} pools,"
        f" {len(settings.variables)} variables from {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
