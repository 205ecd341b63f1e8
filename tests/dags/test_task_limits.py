"""Every task has a time limit, set in the registry's settings; each object runs on its own schedule."""

from __future__ import annotations

from datetime import timedelta

from sfsync.factory import build_full_load_dag, build_sync_dag
from sfsync.registry import Registry, SyncObject, SyncSettings


def test_every_task_times_out_as_the_registry_says():
    settings = SyncSettings(task_timeout_minutes=7, slice_timeout_minutes=90)
    lead = SyncObject(sobject="Lead", direction="bidirectional")
    sync_dag = build_sync_dag(lead, settings)
    assert {t.execution_timeout for t in sync_dag.tasks} == {timedelta(minutes=7)}
    full_load = build_full_load_dag(Registry(settings=settings, objects=(lead,)))
    limits = {t.task_id: t.execution_timeout for t in full_load.tasks}
    assert limits.pop("copy_slice") == timedelta(minutes=90)
    assert set(limits.values()) == {timedelta(minutes=7)}


def test_the_default_limits():
    settings = SyncSettings()
    assert (settings.task_timeout_minutes, settings.slice_timeout_minutes) == (30, 240)


def test_each_object_runs_on_its_schedule():
    assert build_sync_dag(
        SyncObject(sobject="Task", direction="inbound"), SyncSettings()
    ).timetable.expression == ("*/5 * * * *")
    hourly = SyncObject(sobject="Task", direction="inbound", schedule="0 * * * *")
    assert build_sync_dag(hourly, SyncSettings()).timetable.expression == "0 * * * *"
