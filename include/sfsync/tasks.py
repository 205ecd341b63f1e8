"""Airflow tasks shared by the sync DAGs. Heavy imports stay inside the tasks, out of DAG parsing.

Tasks that call Salesforce run in the ``salesforce_api`` pool, which caps concurrent calls across every
object DAG. Tasks take the object's API name and read its registry entry when they run.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from sfsync.defaults import SALESFORCE_CONN_ID, SALESFORCE_POOL, WAREHOUSE_CONN_ID
from sfsync.registry import load_registry

log = logging.getLogger(__name__)


@task
def prepare_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> list[str]:
    """Bring the warehouse schema up to date; return the migrations this run applied."""
    from sfsync.warehouse import connect, migrate

    with connect(conn_id) as conn:
        applied = migrate(conn)
    log.info("warehouse schema: %s", ", ".join(applied) or "already up to date")
    return applied


@task(pool=SALESFORCE_POOL)
def extract_deltas(sobject: str) -> dict[str, Any]:
    """Stage what changed in Salesforce since the last run (see ``sfsync.inbound.extract``)."""
    from sfsync import inbound

    registry = load_registry()
    run_id = get_current_context()["run_id"]
    return inbound.extract(
        registry.get(sobject), registry.settings, run_id, SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID
    )


@task
def merge_into_target(sobject: str, extracted: dict[str, Any]) -> dict[str, Any]:
    """Merge the staged changes and advance the watermark in one transaction."""
    from sfsync import inbound

    if extracted["status"] != "extracted":
        log.info("%s: nothing to merge (%s)", sobject, extracted["status"])
        return extracted
    return inbound.merge(
        load_registry().get(sobject), get_current_context()["run_id"], extracted, WAREHOUSE_CONN_ID
    )


@task(pool=SALESFORCE_POOL)
def reconcile_ids(sobject: str) -> dict[str, Any]:
    """When due, flag rows whose records left Salesforce without a delete record (hard delete, purge)."""
    from sfsync import inbound

    registry = load_registry()
    run_id = get_current_context()["run_id"]
    return inbound.reconcile(
        registry.get(sobject), registry.settings, run_id, SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID
    )
