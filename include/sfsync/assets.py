"""Each synced table is an Airflow Asset, so downstream DAGs can be scheduled on fresh data."""

from __future__ import annotations

from airflow.sdk import Asset

from sfsync.defaults import OBJECT_SCHEMA, WAREHOUSE_CONN_ID
from sfsync.registry import SyncObject


def table_asset(entry: SyncObject) -> Asset:
    """``salesforce.<table>`` in the ``marketing_warehouse`` connection's database."""
    return Asset(
        name=f"{OBJECT_SCHEMA}.{entry.table}",
        uri=f"postgres://{WAREHOUSE_CONN_ID}:5432/warehouse/{OBJECT_SCHEMA}/{entry.table}",
        group="sfsync",
    )
