"""Builds the Airflow DAGs from the registry: one ``sf_sync__<object>`` per entry, and ``sf_full_load``."""

from __future__ import annotations

import functools
import operator
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param

from sfsync.assets import table_asset, wake_assets
from sfsync.defaults import DAG_DEFAULTS, FULL_LOAD_TIMEOUT
from sfsync.registry import Registry, SyncObject, SyncSettings
from sfsync.tasks import (
    check_alerts,
    copy_slice,
    extract_deltas,
    hand_over,
    merge_into_target,
    plan_slices,
    prepare_warehouse,
    push_changes,
    reconcile_ids,
)
from sfsync.timetables import BackfillOnlyTimetable

FULL_LOAD_DAG_ID = "sf_full_load"


def build_sync_dag(entry: SyncObject, settings: SyncSettings) -> DAG:
    """The incremental sync DAG of one registry entry."""
    direction = (
        "Warehouse edits are written back to Salesforce (bidirectional)."
        if entry.direction == "bidirectional"
        else "Salesforce to warehouse only."
    )
    doc = (
        f"### Sync `{entry.sobject}` into `salesforce.{entry.table}`\n\n"
        f"On `{entry.schedule}`, pulls what changed by `{entry.cursor_field}`. {direction}"
    )
    wakes = wake_assets(entry, settings)
    if wakes:
        direction += (
            " Changes also start a run within seconds (events), the schedule staying as the safety net."
        )
    with DAG(
        dag_id=entry.dag_id,
        schedule=_schedule(entry.schedule, wakes),
        doc_md=doc,
        tags=["sfsync", entry.direction],
        **_with_timeout(DAG_DEFAULTS, settings.task_timeout_minutes),
    ) as dag:
        prepared = prepare_warehouse()
        if entry.direction == "bidirectional":
            # Push first, then pull: the pull sees Salesforce after our writes, in the same run. A failed push
            # never holds the pull back (it needs the schema only): Salesforce's changes keep arriving while
            # the push's failure shows in its task and its run.
            extracted = extract_deltas.override(trigger_rule="all_done_min_one_success")(entry.sobject)
            prepared >> push_changes(entry.sobject) >> extracted
        else:
            extracted = extract_deltas(entry.sobject)
        prepared >> extracted
        table = table_asset(entry)
        merged = merge_into_target.override(outlets=[table])(entry.sobject, extracted)  # type: ignore[arg-type]  # an XComArg at parse time
        reconciled = reconcile_ids.override(outlets=[table])(entry.sobject)
        merged >> reconciled
        if settings.alerting:
            # A teardown: it runs whatever the run did, and its outcome never decides the run's state.
            reconciled >> check_alerts(entry.sobject).as_teardown()
    return dag


def build_full_load_dag(registry: Registry) -> DAG:
    """The one-off full load: triggered by hand (the whole org), or backfilled an interval per run."""
    objects = [e.sobject for e in registry.enabled()]
    defaults = _with_timeout(DAG_DEFAULTS, registry.settings.task_timeout_minutes)
    defaults |= {"dagrun_timeout": FULL_LOAD_TIMEOUT, "max_active_runs": 4}
    with DAG(
        dag_id=FULL_LOAD_DAG_ID,
        schedule=BackfillOnlyTimetable(registry.settings.full_load_interval),
        doc_md=FULL_LOAD_DOC.format(
            objects=", ".join(objects),
            interval=registry.settings.full_load_interval,
            job_records=registry.settings.full_load_job_records,
        ),
        tags=["sfsync", "full-load"],
        params={
            "objects": Param(
                [], type="array", items={"enum": objects}, description="Objects to copy; empty: all"
            ),
            "job_records": Param(
                registry.settings.full_load_job_records,
                type="integer",
                minimum=1,
                description="Most records per Bulk job; larger objects are cut into slices of equal size",
            ),
        },
        **defaults,
    ) as dag:
        slices = plan_slices()
        slice_timeout = timedelta(minutes=registry.settings.slice_timeout_minutes)
        copies = copy_slice.override(execution_timeout=slice_timeout).expand(piece=slices)
        prepare_warehouse() >> slices
        copies >> hand_over()
    return dag


def _schedule(cron: str, wakes: list[Asset]) -> str | AssetOrTimeSchedule:
    """The cron alone, or the cron and any of the assets that wake the DAG.

    The cron as a timetable is what Airflow makes of it alone (``CronTriggerTimetable`` in the DAG's UTC),
    so runs without events stay the same. Asset-triggered runs wait while a run is active
    (``max_active_runs``), and the next one consumes every event queued meanwhile: a burst runs once more.
    """
    if not wakes:
        return cron
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=functools.reduce(operator.or_, wakes)
    )


def _with_timeout(defaults: dict[str, Any], minutes: float) -> dict[str, Any]:
    """DAG defaults whose tasks time out after ``minutes``."""
    return defaults | {
        "default_args": defaults["default_args"] | {"execution_timeout": timedelta(minutes=minutes)}
    }


FULL_LOAD_DOC = """### Full load

Copies every record the integration user can see ({objects}) with Bulk API 2.0, in CreatedDate slices
sized by the records' counts: an object of up to {job_records:,} records (param `job_records`) in one
Bulk job, a larger one in slices of about equal size; one mapped `copy_slice` task per slice, each
retried on its own. A manual run copies the whole history (params `objects`, `job_records`); a backfill
run copies the records created in its interval (`{interval}`, the registry's `full_load_interval`), and
skips the objects with none:

    airflow backfill create --dag-id sf_full_load --from-date 2015-01-01 --to-date 2025-01-01

While a full load of an object runs, its `sf_sync__<object>` DAG waits; afterwards it continues from a
watermark taken before the copy started. Re-running a slice or the whole load is harmless.
"""
