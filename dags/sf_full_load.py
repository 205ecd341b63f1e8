"""``sf_full_load``: the Airflow DAG that copies the whole org once, triggered by hand or backfilled."""

from sfsync.factory import build_full_load_dag
from sfsync.registry import load_registry

sf_full_load = build_full_load_dag(load_registry())
