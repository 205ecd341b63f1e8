"""What a task hands the sync engine: this run's id, the settings, and its two clients.

Tasks open the clients; engine steps (``extract``, ``merge``, ``reconcile``, ``push``, the full load's)
receive them in a ``Context``, so their decisions can be exercised with any client that speaks the same
methods. The Salesforce client logs in only when a step first asks for it: a run that waits for a full
load, or that the API budget holds back, makes no call at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sfsync.defaults import SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID

if TYPE_CHECKING:
    import psycopg

    from sfsync.registry import SyncObject, SyncSettings
    from sfsync.salesforce import Salesforce

T = TypeVar("T")


@dataclass
class Context:
    run_id: str
    settings: SyncSettings
    conn: psycopg.Connection
    #: Names the org in the API-usage readings: the Salesforce connection's id.
    org: str
    connect_salesforce: Callable[[], Salesforce]
    _sf: Salesforce | None = field(default=None, repr=False)

    @property
    def sf(self) -> Salesforce:
        """The Salesforce client, logged in on first use."""
        if self._sf is None:
            self._sf = self.connect_salesforce()
        return self._sf

    @property
    def calls(self) -> int:
        """API calls made so far by this step (none before the client logs in)."""
        return self._sf.meter.calls if self._sf is not None else 0

    def record_usage(self) -> None:
        """Keep the org's API usage the client last saw (read by the budget guard and the status page)."""
        from sfsync import state

        meter = self._sf.meter if self._sf is not None else None
        if meter and meter.used is not None and meter.limit is not None and meter.server_time is not None:
            state.record_usage(self.conn, self.org, meter.used, meter.limit, meter.server_time)


@contextmanager
def opened(
    run_id: str,
    settings: SyncSettings,
    bulk_deadline: timedelta | None = None,
    sf_conn_id: str = SALESFORCE_CONN_ID,
    wh_conn_id: str = WAREHOUSE_CONN_ID,
) -> Iterator[Context]:
    """A context on the Airflow connections ``sf_conn_id`` and ``wh_conn_id``; the warehouse connection is
    closed on leaving. ``bulk_deadline``: how long a Bulk job may run (by default the settings' for a sync
    task)."""
    from sfsync import warehouse
    from sfsync.salesforce import Salesforce

    deadline = bulk_deadline or settings.bulk_deadline
    with warehouse.connect(wh_conn_id) as conn:
        yield Context(run_id, settings, conn, sf_conn_id, lambda: Salesforce(sf_conn_id, deadline))


def run_step(
    step: Callable[..., T], entry: SyncObject, settings: SyncSettings, run_id: str, *args: Any, **kwargs: Any
) -> T:
    """Run one engine step of one object on the default connections: ``step(context, entry, *args)``."""
    with opened(run_id, settings) as context:
        return step(context, entry, *args, **kwargs)
