"""One ``sf_sync__<object>`` DAG per enabled entry of the sfsync registry (include/sfsync/objects.yaml)."""

from airflow.sdk import get_parsing_context

from sfsync.factory import build_sync_dag
from sfsync.registry import load_registry

current_dag_id = get_parsing_context().dag_id  # set when a task runs: build only that task's DAG
registry = load_registry()
for entry in registry.enabled():
    if current_dag_id in (None, entry.dag_id):
        globals()[entry.dag_id] = build_sync_dag(entry, registry.settings)
