"""Airflow tasks shared by the sync DAGs. Heavy imports stay inside the tasks, out of DAG parsing.

Tasks that call Salesforce run in the ``salesforce_api`` pool, which caps concurrent calls across every
object DAG. Tasks take the object's API name and read its registry entry when they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk import get_current_context, task

from sfsync.defaults import SALESFORCE_CONN_ID, SALESFORCE_POOL, WAREHOUSE_CONN_ID
from sfsync.registry import RegistryError, load_registry

log = logging.getLogger(__name__)


def _for_object(step: Callable[..., dict[str, Any]], sobject: str) -> dict[str, Any]:
    """Run one step of an object's sync with its registry entry, the shared settings and this run's id.
    A registry mistake fails the task without retries: it fails the same way until someone fixes it."""
    from airflow.sdk.exceptions import AirflowFailException

    registry = load_registry()
    run_id = get_current_context()["run_id"]
    try:
        return step(registry.get(sobject), registry.settings, run_id, SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID)
    except RegistryError as error:
        raise AirflowFailException(str(error)) from error


def _changed_rows(sobject: str, result: dict[str, Any], counters: tuple[str, ...]) -> dict[str, Any]:
    """``result``, where one of its ``counters`` says rows changed; else the task ends skipped, so the
    table's Asset gets no event (DAGs scheduled on it run on fresh data only)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not any(result.get(counter) for counter in counters):
        raise AirflowSkipException(f"{sobject}: no row changed ({result['status']}); no Asset event")
    return result


@task
def prepare_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> list[str]:
    """Bring the warehouse schema up to date; return the migrations this run applied."""
    from sfsync.warehouse import connect, migrate

    with connect(conn_id) as conn:
        applied = migrate(conn)
    log.info("warehouse schema: %s", ", ".join(applied) or "already up to date")
    return applied


# No retries: the next run pushes what this one could not, and a retried push would hold the pull back.
@task(pool=SALESFORCE_POOL, retries=0)
def push_changes(sobject: str) -> dict[str, Any]:
    """Write the warehouse's captured changes of a bidirectional object to Salesforce (before the pull)."""
    from sfsync import writeback
    from sfsync.context import run_step

    # The push takes a context; _for_object still hands the other steps connection ids.
    return _for_object(
        lambda entry, settings, run_id, *_: run_step(writeback.push, entry, settings, run_id), sobject
    )


@task(pool=SALESFORCE_POOL)
def extract_deltas(sobject: str) -> dict[str, Any]:
    """Stage what changed in Salesforce since the last run (see ``sfsync.inbound.extract``)."""
    from sfsync import inbound

    return _for_object(inbound.extract, sobject)


@task
def merge_into_target(sobject: str, extracted: dict[str, Any]) -> dict[str, Any]:
    """Merge the staged changes and advance the watermark in one transaction. A run that changed no row
    ends skipped: its table's Asset gets no event, so DAGs scheduled on it run on fresh data only."""
    from sfsync import inbound

    if extracted["status"] == "extracted":
        run_id = get_current_context()["run_id"]
        registry = load_registry()
        merged = inbound.merge(registry.get(sobject), registry.settings, run_id, extracted, WAREHOUSE_CONN_ID)
    else:
        merged = extracted  # finished by the extract task, or nothing to merge (waiting, skipped)
    return _changed_rows(sobject, merged, ("new", "updated", "deleted"))


@task(pool=SALESFORCE_POOL, trigger_rule="none_failed")  # also after a merge that changed nothing
def reconcile_ids(sobject: str) -> dict[str, Any]:
    """When due, compare every Id with Salesforce (see ``inbound.reconcile``). Like the merge, it ends
    skipped when it changed no row, so the table's Asset gets an event only for fresh data."""
    from sfsync import inbound

    return _changed_rows(sobject, _for_object(inbound.reconcile, sobject), ("flagged", "found"))


@task(pool=SALESFORCE_POOL)
def plan_slices(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Cut each object's history into CreatedDate slices: all of it for a manual run, the data interval
    for a backfill run (``airflow backfill create --dag-id sf_full_load ...``)."""
    from sfsync import full_load

    context = get_current_context()
    params = params or {}
    interval = None
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if context["dag_run"].run_type == "backfill" and start and end:
        interval = (start, end)
    return full_load.plan(
        list(params.get("objects") or []),
        float(params.get("slice_days") or 30),
        interval,
        context["run_id"],
        SALESFORCE_CONN_ID,
        WAREHOUSE_CONN_ID,
    )


@task(
    pool=SALESFORCE_POOL,
    map_index_template="{{ piece.sobject }} {{ piece.start[:10] }}..{{ piece.end[:10] }}",
)
def copy_slice(piece: dict[str, str]) -> dict[str, Any]:
    """Copy one object's records created in one slice, with Bulk API 2.0, and merge them."""
    from sfsync import full_load

    return full_load.copy_slice(piece, get_current_context()["run_id"], SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID)


@task(trigger_rule="all_done")
def hand_over() -> dict[str, Any]:
    """Let each fully copied object's incremental DAG continue from before the copy; report failed slices."""
    from sfsync import full_load

    return full_load.finish(get_current_context()["run_id"], WAREHOUSE_CONN_ID)
