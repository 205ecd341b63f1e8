"""What wakes a sync DAG between its scheduled runs: the triggers of the watchers on the Assets it is
scheduled on (``assets.py``), run by Airflow's triggerer.

``WarehouseNotifyTrigger`` wakes a bidirectional object's DAG when an editor's change lands in the outbox
(the capture trigger's NOTIFY); ``SalesforceChangeEventTrigger`` when Salesforce publishes a change event for
the object (Change Data Capture). Each yields one event per burst: the first change, and every one within
the debounce after it. A wake only starts a run, which reads the outbox and the delta by its cursor as always:
a missed, late or repeated wake costs latency, never correctness, and the schedule stays the safety net.

Triggers are rebuilt from their ``serialize()`` kwargs, which are also their identity: connection ids, never
credentials. A watcher whose ``run()`` ended would be started again within a second, so failures are retried
here, with a growing delay, and logged with their cause. Each watcher also records its state in the
warehouse (``watchers``: following or failing and why, its wakes, a heartbeat) for the status page.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from sfsync.watchers import CHANGE_EVENTS, WAREHOUSE_EDITS, Record, connect, redact, secrets_of

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from sfsync.streaming import ChangeEvent, Gap, Session

T = TypeVar("T")

#: Retry delays double from RETRY_SECONDS up to RETRY_CAP_SECONDS (the schedule's 5 minutes: a watcher that
#: cannot connect wakes nothing the schedule would not); a source that ran this long starts over at the first.
RETRY_SECONDS, RETRY_CAP_SECONDS, HEALTHY_SECONDS = 1.0, 300.0, 60.0
#: The last replay id a wake covered, in the CDC asset's state store (kept across triggerer restarts).
REPLAY_KEY = "replay_id"
#: TCP keepalives on the listening connection: a peer gone without a word is noticed within about a minute.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
_RECONNECTED = "reconnected"  # the listener is back: edits may have come while nobody listened


def _defined_or_sync(conn_id: str) -> Connection:
    """The connection ``conn_id`` if it is defined, else the sync's own (``salesforce_default``)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from sfsync.defaults import SALESFORCE_CONN_ID

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return BaseHook.get_connection(SALESFORCE_CONN_ID)


def outbox_channel(table: str) -> str:
    """The channel the capture notifies for a table (``sql/migrations/0015_outbox_notify.sql``)."""
    return f"sfsync_outbox_{table}"


def change_event_channel(sobject: str) -> str:
    """The Streaming API channel of an object's change events (``Invoice__c``: ``Invoice__ChangeEvent``)."""
    return f"/data/{sobject.removesuffix('__c')}{'__' if sobject.endswith('__c') else ''}ChangeEvent"


class _Watcher(BaseEventTrigger):
    """A watcher's trigger: serialized from the attributes its ``__init__`` takes (``KWARGS``)."""

    KWARGS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()  # what neither the log nor the warehouse may show

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__name__}", {name: getattr(self, name) for name in self.KWARGS}

    @asynccontextmanager
    async def _recorded(self, conn_id: str, sobject: str, source: str) -> AsyncIterator[Record]:
        """The watcher's ``Record``, written to the warehouse of ``conn_id`` while the block runs."""
        record = Record(conn_id, sobject, source, self.log, self._secrets)
        keeping = asyncio.create_task(record.keep())
        try:
            yield record
        finally:
            keeping.cancel()
            await asyncio.gather(keeping, return_exceptions=True)

    async def _retried(
        self, source: Callable[[bool], AsyncIterator[T]], what: str, record: Record
    ) -> AsyncGenerator[T, None]:
        """The items of ``source(again)`` for ever: opened again (``again`` True) after any failure, once a
        delay doubling from RETRY_SECONDS to RETRY_CAP_SECONDS has passed, the cause logged and recorded."""
        failures, again = 0, False
        while True:
            started = time.monotonic()
            try:
                async for item in source(again):  # noqa: UP028 (no yield from in async generators)
                    yield item
                error = "the source ended"
            except Exception as failure:  # anything: the schedule still syncs, and the watcher goes on
                error = redact(f"{type(failure).__name__}: {failure}", self._secrets)
            failures = 1 if time.monotonic() - started > HEALTHY_SECONDS else failures + 1
            delay = min(RETRY_SECONDS * 2 ** (failures - 1), RETRY_CAP_SECONDS)
            self.log.warning("%s failed (%s); trying again in %.1f s", what, error, delay)
            record.failing(error, delay)
            await asyncio.sleep(delay)
            again = True


class WarehouseNotifyTrigger(_Watcher):
    """One event per burst of warehouse edits to a bidirectional table (its capture's notifications on
    ``channel``), and one after the listening connection came back (edits may have come meanwhile).
    ``sobject`` names the object in its record."""

    KWARGS = ("conn_id", "channel", "debounce", "sobject")

    def __init__(self, conn_id: str, channel: str, debounce: float, sobject: str) -> None:
        super().__init__()
        self.conn_id, self.channel, self.debounce, self.sobject = conn_id, channel, debounce, sobject

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with self._recorded(self.conn_id, self.sobject, WAREHOUSE_EDITS) as record:
            listening = functools.partial(self._notifications, record)
            source = self._retried(listening, f"listening on {self.channel}", record)
            async with aclosing(bursts(source, self.debounce)) as wakes:
                async for burst in wakes:
                    notified = sum(item != _RECONNECTED for item in burst)
                    record.woken()
                    yield TriggerEvent({"channel": self.channel, "notifications": notified})

    async def _notifications(self, record: Record, again: bool) -> AsyncIterator[str]:
        from psycopg import sql

        async with await connect(self.conn_id, self._secrets, **KEEPALIVES) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            record.following()
            if again:
                # Postgres keeps no notification for a connection that is not listening.
                self.log.info("Listening on %s again: waking the DAG for what came meanwhile", self.channel)
                yield _RECONNECTED
            async for notification in conn.notifies():
                yield notification.channel


class SalesforceChangeEventTrigger(_Watcher):
    """One event per burst of Salesforce change events of ``sobject`` (Change Data Capture), from the replay
    id the last wake covered; events the sync's own write-back caused wake nothing. Its record goes to the
    warehouse of ``warehouse_conn_id``."""

    KWARGS = ("conn_id", "sobject", "debounce", "warehouse_conn_id")

    def __init__(self, conn_id: str, sobject: str, debounce: float, warehouse_conn_id: str) -> None:
        super().__init__()
        self.conn_id, self.sobject, self.debounce = conn_id, sobject, debounce
        self.warehouse_conn_id = warehouse_conn_id
        self._user_id: str | None = None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from sfsync.streaming import NEW_EVENTS, ChangeEvent, ChangeStream

        store = getattr(self, "asset_state_store", None)  # injected by the triggerer
        stored = await store.aget(REPLAY_KEY) if store is not None else None
        channel = change_event_channel(self.sobject)
        replay_id = stored if isinstance(stored, int) else NEW_EVENTS
        async with self._recorded(self.warehouse_conn_id, self.sobject, CHANGE_EVENTS) as record:
            stream = ChangeStream(self._login, channel, replay_id, subscribed=record.following)
            source = self._retried(lambda again: stream.events(), f"following {channel}", record)
            async with aclosing(bursts(source, self.debounce)) as wakes:
                async for burst in wakes:
                    theirs = [item for item in burst if not self._own(item)]
                    for item in theirs:
                        if not isinstance(item, ChangeEvent):
                            self.log.warning("Waking the DAG: %s", item.reason)
                    if theirs:
                        record.woken()
                        yield TriggerEvent({"channel": channel, "changes": len(theirs)})
                    # Only once the wake is out: a triggerer that stops first replays them when it starts.
                    replayed = [item.replay_id for item in burst if isinstance(item, ChangeEvent)]
                    if replayed and store is not None:
                        await store.aset(REPLAY_KEY, replayed[-1])

    def _own(self, item: ChangeEvent | Gap) -> bool:
        """Whether the sync's own write-back made this change, which the same run's pull reads anyway.

        By ``commitUser``, the integration user: it is on every change event, and the push commits as that
        user whichever API it writes through. ``changeOrigin`` could name the sync only through an
        ``Sforce-Call-Options`` header's ``client=``, which Salesforce records for REST calls but not for the
        Bulk API jobs large pushes use. What else commits as that user in the push's transaction (a flow or
        Apex trigger it set off, on another object too) is skipped with it, as is a change by another tool
        sharing the user: the schedule brings those, a few minutes later at most.
        """
        header = getattr(item, "header", None)
        return header is not None and self._user_id is not None and header.get("commitUser") == self._user_id

    async def _login(self) -> Session:
        from sfsync.salesforce import Salesforce
        from sfsync.streaming import session_from

        conn = await asyncio.to_thread(_defined_or_sync, self.conn_id)
        self._secrets.update(secrets_of(conn))  # before the login: a failed login's error is redacted too
        session = await asyncio.to_thread(lambda: session_from(Salesforce(conn.conn_id)))
        self._secrets.add(session.token)
        self._user_id = session.user_id
        return session


async def bursts(items: AsyncIterator[T], debounce: float) -> AsyncGenerator[list[T], None]:
    """``items`` in bursts: the first, and every one that arrives within ``debounce`` seconds after it.

    A task reads ``items`` into a queue, so the source (a long poll, a LISTEN) is never interrupted by the
    debounce's timeout; the task ends with the bursts.
    """
    queue: asyncio.Queue[T] = asyncio.Queue()

    async def pump() -> None:
        async for item in items:
            queue.put_nowait(item)

    pumping = asyncio.create_task(pump())

    async def take(timeout: float | None) -> list[T]:
        """The next item, or none once ``timeout`` has passed."""
        getting = asyncio.ensure_future(queue.get())
        await asyncio.wait({getting, pumping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            return [getting.result()]
        getting.cancel()  # a get cancelled before it completed takes nothing from the queue
        if pumping.done() and timeout is None:  # (within a burst, the burst so far goes out first)
            pumping.result()  # the source's failure, if it failed
            raise RuntimeError("the event source ended")
        return []

    loop = asyncio.get_running_loop()
    try:
        while True:
            burst = await take(None)
            deadline = loop.time() + debounce
            while (left := deadline - loop.time()) > 0 and (more := await take(left)):
                burst += more
            yield burst
    finally:
        pumping.cancel()
