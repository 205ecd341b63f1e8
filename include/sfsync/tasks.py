"""Airflow tasks shared by the sync DAGs. Heavy imports stay inside the tasks, out of DAG parsing.

Tasks that call Salesforce run in the ``salesforce_api`` pool, which caps concurrent calls across every
object DAG. Tasks take the object's API name and read its registry entry when they run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import get_current_context, task

from sfsync.defaults import SALESFORCE_POOL, WAREHOUSE_CONN_ID
from sfsync.registry import RegistryError, load_registry

log = logging.getLogger(__name__)
T = TypeVar("T")


def _for_object(step: Callable[..., dict[str, Any]], sobject: str, *args: Any) -> dict[str, Any]:
    """Run one step of an object's sync (``step(context, entry, *args)``) on this run's clients. A registry
    mistake fails the task without retries: it fails the same way until someone fixes it."""
    from airflow.sdk.exceptions import AirflowFailException

    from sfsync.context import run_step

    registry = load_registry()
    try:
        entry = registry.get(sobject)
        return run_step(step, get_current_context()["run_id"], entry, *args, settings=registry.settings)
    except RegistryError as error:
        raise AirflowFailException(str(error)) from error


def _full_load(step: Callable[..., T], *args: Any, slices: bool = False) -> T:
    """Run one step of the full load (``step(context, *args)``) on this run's clients; a slice's Bulk jobs
    may take as long as its task allows."""
    from sfsync.context import run_step

    settings = load_registry().settings
    deadline = settings.slice_bulk_deadline if slices else None
    return run_step(step, get_current_context()["run_id"], *args, settings=settings, bulk_deadline=deadline)


def _changed_rows(sobject: str, result: dict[str, Any], counters: tuple[str, ...]) -> dict[str, Any]:
    """``result``, where one of its ``counters`` says rows changed; else the task ends skipped, so the
    table's Asset gets no event (DAGs scheduled on it run on fresh data only)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not any(result.get(counter) for counter in counters):
        raise AirflowSkipException(f"{sobject}: no row changed ({result['status']}); no Asset event")
    return result


@task
def prepare_warehouse(conn_id: str = WAREHOUSE_CONN_ID) -> list[str]:
    """Bring the warehouse schema up to date and prune old run history (one run at a time does it); return
    the migrations this run applied."""
    from sfsync import locks, state
    from sfsync.migrations import migrate
    from sfsync.warehouse import connect

    with connect(conn_id) as conn:
        applied = migrate(conn)
        with locks.trying(conn, "prune_history") as mine:
            pruned = state.prune_history(conn, load_registry().settings.run_history_days) if mine else {}
            if any(pruned.values()):
                log.info("pruned run history older than the registry's run_history_days: %s", pruned)
    log.info("warehouse schema: %s", ", ".join(applied) or "already up to date")
    return applied


# No retries: the next run pushes what this one could not, and a retried push would hold the pull back.
@task(pool=SALESFORCE_POOL, retries=0)
def push_changes(sobject: str) -> dict[str, Any]:
    """Write the warehouse's captured changes of a bidirectional object to Salesforce (before the pull)."""
    from sfsync.writeback import push

    return _for_object(push, sobject)


@task(pool=SALESFORCE_POOL)
def extract_deltas(sobject: str) -> dict[str, Any]:
    """Read what changed in Salesforce since the last run (see ``sfsync.extract``)."""
    from sfsync.extract import extract

    return _for_object(extract, sobject)


# In the pool: a Bulk job's results are read here, straight into the table.
@task(pool=SALESFORCE_POOL)
def merge_into_target(sobject: str, extracted: dict[str, Any]) -> dict[str, Any]:
    """Merge the extracted changes and advance the watermark in one transaction (see ``sfsync.merge``). A
    run that changed no row ends skipped: its table's Asset gets no event, so DAGs scheduled on it run on
    fresh data only."""
    from sfsync.merge import merge

    if extracted["status"] == "extracted":
        merged = _for_object(merge, sobject, extracted)
    else:
        merged = extracted  # nothing to merge (waiting for a full load, skipped by the budget guard)
    return _changed_rows(sobject, merged, ("new", "updated", "deleted"))


@task(pool=SALESFORCE_POOL, trigger_rule="none_failed")  # also after a merge that changed nothing
def reconcile_ids(sobject: str) -> dict[str, Any]:
    """When due, compare every Id with Salesforce (see ``sfsync.reconcile``). Like the merge, it ends
    skipped when it changed no row, so the table's Asset gets an event only for fresh data."""
    from sfsync.reconcile import reconcile

    return _changed_rows(sobject, _for_object(reconcile, sobject), ("flagged", "found"))


@task(trigger_rule="all_done")
def check_alerts(sobject: str) -> list[str]:
    """Raise the object's alerts whose threshold it passed (see ``sfsync.alerts``); whatever the run did."""
    from sfsync import alerts
    from sfsync.warehouse import connect

    with connect(WAREHOUSE_CONN_ID) as conn:
        return alerts.check(conn, load_registry(), sobject, get_current_context())


@task(pool=SALESFORCE_POOL)
def plan_slices(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Cut each object's history into CreatedDate slices of about equal size: all of it for a manual run,
    the data interval for a backfill run (``airflow backfill create --dag-id sf_full_load ...``)."""
    from sfsync import full_load

    context = get_current_context()
    params = params or {}
    interval = None
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if context["dag_run"].run_type == "backfill" and start and end:
        interval = (start, end)
    objects, job_records = list(params.get("objects") or []), params.get("job_records")
    return _full_load(full_load.plan, objects, interval, int(job_records) if job_records else None)


@task(
    pool=SALESFORCE_POOL,
    map_index_template="{{ piece.sobject }} {{ piece.start[:10] }}..{{ piece.end[:10] }}",
)
def copy_slice(piece: dict[str, str]) -> dict[str, Any]:
    """Copy one object's records created in one slice, with Bulk API 2.0, and merge them."""
    from sfsync import full_load

    return _full_load(full_load.copy_slice, piece, slices=True)


@task(trigger_rule="all_done")
def hand_over() -> dict[str, Any]:
    """Let each fully copied object's incremental DAG continue from before the copy; report failed slices."""
    from sfsync import full_load

    return _full_load(full_load.finish)
