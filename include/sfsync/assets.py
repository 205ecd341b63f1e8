"""Each synced table is an Airflow Asset, so downstream DAGs can be scheduled on fresh data; an object with
``events`` in the registry also has Assets whose watchers wake its DAG when something changed."""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger

from sfsync.defaults import OBJECT_SCHEMA, SALESFORCE_EVENTS_CONN_ID, WAREHOUSE_CONN_ID
from sfsync.events import (
    SalesforceChangeEventTrigger,
    WarehouseNotifyTrigger,
    change_event_channel,
    outbox_channel,
)
from sfsync.registry import SyncObject, SyncSettings
from sfsync.watchers import CHANGE_EVENTS, WAREHOUSE_EDITS, sources


def table_asset(entry: SyncObject) -> Asset:
    """``salesforce.<table>`` in the ``marketing_warehouse`` connection's database."""
    return Asset(
        name=f"{OBJECT_SCHEMA}.{entry.table}",
        uri=f"postgres://{WAREHOUSE_CONN_ID}:5432/warehouse/{OBJECT_SCHEMA}/{entry.table}",
        group="sfsync",
    )


def wake_assets(entry: SyncObject, settings: SyncSettings) -> list[Asset]:
    """The Assets that wake an object's DAG: its Salesforce change events, and for a bidirectional object
    its warehouse edits (none without ``events``). Their events carry no data: the run reads the changes."""
    watched = sources(entry)
    if not watched:
        return []
    debounce = settings.events_debounce_seconds
    changes = SalesforceChangeEventTrigger(
        SALESFORCE_EVENTS_CONN_ID, entry.sobject, debounce, WAREHOUSE_CONN_ID
    )
    wakes = [_watched(f"salesforce{change_event_channel(entry.sobject)}", entry, CHANGE_EVENTS, changes)]
    if WAREHOUSE_EDITS in watched:
        channel = outbox_channel(entry.table)
        edits = WarehouseNotifyTrigger(WAREHOUSE_CONN_ID, channel, debounce, entry.sobject)
        wakes.append(_watched(f"sfsync.outbox.{entry.table}", entry, WAREHOUSE_EDITS, edits))
    return wakes


def _watched(name: str, entry: SyncObject, kind: str, trigger: BaseEventTrigger) -> Asset:
    return Asset(
        name=name,
        group="sfsync",
        watchers=[AssetWatcher(name=f"{entry.table}_{kind}", trigger=trigger)],
    )
