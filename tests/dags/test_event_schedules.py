"""Objects with ``events`` in the registry run on their cron or when a watcher sees a change: Salesforce's
change events, and a bidirectional object's warehouse edits. The watchers' triggers are event triggers the
triggerer can rebuild from what they serialize, and that holds connection ids, never credentials."""

from __future__ import annotations

import importlib

import pytest
from airflow.sdk import AssetAny
from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule
from airflow.serialization.serialized_objects import DagSerialization
from airflow.triggers.base import BaseEventTrigger

from sfsync.defaults import SALESFORCE_EVENTS_CONN_ID, WAREHOUSE_CONN_ID
from sfsync.events import change_event_channel
from sfsync.factory import build_sync_dag
from sfsync.registry import SyncObject, SyncSettings, load_registry
from sfsync.watchers import sources

SETTINGS = SyncSettings(events_debounce_seconds=1.5)


def watchers(dag):
    condition = dag.timetable.asset_condition
    assets = condition.objects if isinstance(condition, AssetAny) else [condition]
    return {asset.name: asset.watchers[0].trigger for asset in assets}


def watcher_names(dag) -> set[str]:
    condition = dag.timetable.asset_condition
    assets = condition.objects if isinstance(condition, AssetAny) else [condition]
    return {watcher.name for asset in assets for watcher in asset.watchers}


def test_a_bidirectional_object_wakes_on_change_events_or_warehouse_edits():
    dag = build_sync_dag(SyncObject(sobject="Lead", direction="bidirectional", events=True), SETTINGS)
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.asset_condition, AssetAny), "either wakes it, not both together"
    triggers = watchers(dag)
    assert set(triggers) == {"salesforce/data/LeadChangeEvent", "sfsync.outbox.lead"}
    assert triggers["salesforce/data/LeadChangeEvent"].serialize() == (
        "sfsync.events.SalesforceChangeEventTrigger",
        {
            "conn_id": SALESFORCE_EVENTS_CONN_ID,
            "sobject": "Lead",
            "debounce": 1.5,
            "warehouse_conn_id": WAREHOUSE_CONN_ID,
        },
    )
    assert triggers["sfsync.outbox.lead"].serialize() == (
        "sfsync.events.WarehouseNotifyTrigger",
        {"conn_id": WAREHOUSE_CONN_ID, "channel": "sfsync_outbox_lead", "debounce": 1.5, "sobject": "Lead"},
    )
    assert dag.max_active_runs == 1, "wakes during a run coalesce into the next one"


@pytest.mark.parametrize(
    "entry",
    [
        SyncObject(sobject="Lead", direction="bidirectional", events=True),
        SyncObject(sobject="Invoice__c", direction="inbound", events=True),
    ],
    ids=lambda e: e.dag_id,
)
def test_the_status_page_expects_the_watchers_the_dag_has(entry):
    dag = build_sync_dag(entry, SETTINGS)
    assert watcher_names(dag) == {f"{entry.table}_{source}" for source in sources(entry)}


def test_an_inbound_object_wakes_on_change_events_only_and_without_events_on_its_cron_alone():
    inbound = build_sync_dag(SyncObject(sobject="Invoice__c", direction="inbound", events=True), SETTINGS)
    assert set(watchers(inbound)) == {"salesforce/data/Invoice__ChangeEvent"}
    plain = build_sync_dag(SyncObject(sobject="Lead", direction="bidirectional"), SETTINGS)
    assert type(plain.timetable).__name__ == "CronTriggerTimetable"


@pytest.mark.parametrize("entry", [e for e in load_registry().enabled() if e.events], ids=lambda e: e.dag_id)
def test_the_watchers_triggers_rebuild_from_what_they_serialize(entry):
    dag = build_sync_dag(entry, SETTINGS)
    for trigger in watchers(dag).values():
        assert isinstance(trigger, BaseEventTrigger)
        classpath, kwargs = trigger.serialize()
        module, _, name = classpath.rpartition(".")  # as the triggerer imports it
        rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
        assert type(rebuilt) is type(trigger) and rebuilt.serialize() == (classpath, kwargs)
        assert set(kwargs) <= {"conn_id", "channel", "sobject", "debounce", "warehouse_conn_id"}, (
            "ids, never credentials"
        )
    # The scheduler gets the watchers as the DAG processor serializes them.
    again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert type(again.timetable).__name__ == "AssetOrTimeSchedule"
    assert again.timetable.timetable.summary == entry.schedule


def test_the_demo_wakes_lead_on_events_and_the_rest_on_their_schedule():
    assert [e.sobject for e in load_registry().enabled() if e.events] == ["Lead"]


@pytest.mark.parametrize(
    ("sobject", "channel"),
    [("Lead", "/data/LeadChangeEvent"), ("Invoice__c", "/data/Invoice__ChangeEvent")],
)
def test_change_event_channels(sobject, channel):
    assert change_event_channel(sobject) == channel
