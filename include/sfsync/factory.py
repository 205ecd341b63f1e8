"""Builds the Airflow DAGs from the registry: one ``sf_sync__<object>`` per entry, and ``sf_full_load``."""

from __future__ import annotations

from airflow.sdk import DAG

from sfsync.assets import table_asset
from sfsync.defaults import DAG_DEFAULTS, SYNC_SCHEDULE
from sfsync.registry import Registry, SyncObject
from sfsync.tasks import extract_deltas, merge_into_target, prepare_warehouse, reconcile_ids

FULL_LOAD_DAG_ID = "sf_full_load"


def build_sync_dag(entry: SyncObject) -> DAG:
    """The incremental sync DAG of one registry entry."""
    direction = (
        "Warehouse edits are written back to Salesforce (bidirectional)."
        if entry.direction == "bidirectional"
        else "Salesforce to warehouse only."
    )
    doc = (
        f"### Sync `{entry.sobject}` into `salesforce.{entry.table}`\n\n"
        f"Every 5 minutes, pulls what changed by `{entry.cursor_field}`. {direction}"
    )
    with DAG(
        dag_id=entry.dag_id,
        schedule=SYNC_SCHEDULE,
        doc_md=doc,
        tags=["sfsync", entry.direction],
        **DAG_DEFAULTS,
    ) as dag:
        extracted = extract_deltas(entry.sobject)
        merged = merge_into_target.override(outlets=[table_asset(entry)])(entry.sobject, extracted)  # type: ignore[arg-type]  # an XComArg at parse time
        prepare_warehouse() >> extracted
        merged >> reconcile_ids(entry.sobject)
    return dag


def build_full_load_dag(registry: Registry) -> DAG:
    """The one-off full load of every enabled object; triggered by hand or backfilled, never scheduled."""
    objects = ", ".join(e.sobject for e in registry.enabled())
    with DAG(
        dag_id=FULL_LOAD_DAG_ID,
        schedule=None,
        doc_md=f"### Full load\n\nCopies the whole org with Bulk API 2.0 ({objects}).",
        tags=["sfsync", "full-load"],
        **DAG_DEFAULTS,
    ) as dag:
        prepare_warehouse()
    return dag
