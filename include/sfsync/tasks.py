"""Airflow tasks shared by the sync DAGs. Heavy imports stay inside the tasks, out of DAG parsing."""

from __future__ import annotations

from airflow.sdk import task

from sfsync.defaults import WAREHOUSE_CONN_ID


@task
def prepare_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> list[str]:
    """Bring the warehouse schema up to date; return the migrations this run applied."""
    import logging

    from sfsync.warehouse import connect, migrate

    with connect(conn_id) as conn:
        applied = migrate(conn)
    logging.getLogger(__name__).info("warehouse schema: %s", ", ".join(applied) or "already up to date")
    return applied
