"""Settings shared by every sfsync DAG: connection ids, the pool, schedule and DAG defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

SALESFORCE_CONN_ID = "salesforce_default"
WAREHOUSE_CONN_ID = "marketing_warehouse"
#: Optional: the user that subscribes to change events. Salesforce lets only a user with "View All" on an
#: object read its change events, and that permission also lifts sharing: the sync's own user may well lack
#: it. The events only wake a DAG (nothing in them is kept), so this user never widens what is synced.
#: Undefined, ``salesforce_default`` subscribes.
SALESFORCE_EVENTS_CONN_ID = "salesforce_events"
#: Caps concurrent Salesforce calls across all object DAGs; size it to the org's concurrency budget.
SALESFORCE_POOL = "salesforce_api"

#: The warehouse schema of the synced tables; the sync's own bookkeeping lives in schema ``sfsync``.
OBJECT_SCHEMA = "salesforce"
#: A full load unfinished for longer than this no longer holds its objects' incremental DAGs back.
FULL_LOAD_TIMEOUT = timedelta(hours=24)

#: Every 5 minutes unless a registry entry says otherwise; with max_active_runs=1 runs never overlap.
SYNC_SCHEDULE = "*/5 * * * *"
#: No sync DAG run lasts longer: a run marked at work for longer than this is abandoned by a later one.
DAGRUN_TIMEOUT = timedelta(minutes=60)
APPROVED_TAGS = frozenset({"sfsync", "bidirectional", "inbound", "full-load"})

DAG_DEFAULTS: dict[str, Any] = {
    "start_date": pendulum.datetime(2025, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_runs": 1,
    "max_consecutive_failed_dag_runs": 12,
    "dagrun_timeout": DAGRUN_TIMEOUT,
    "default_args": {
        "owner": "sfsync",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
}
