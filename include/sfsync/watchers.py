"""What the event watchers (``sfsync.events``) say of themselves, in the warehouse's ``sfsync.watchers``:
whether each follows its source or fails (why, in words, and when it tries again), its wakes, and a
heartbeat, by which the status page tells a watcher that no triggerer runs any more.

A watcher never waits on the warehouse, which may be the very thing that is down: it notes its state in
a ``Record``, whose one task writes the latest note at once and again every HEARTBEAT_SECONDS, over one
kept connection; a write that fails is logged and made again with the next. Errors are kept in words,
without credentials (``redact``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk import Connection

    from sfsync.registry import SyncObject

CHANGE_EVENTS, WAREHOUSE_EDITS = "change_events", "warehouse_edits"
FOLLOWING, FAILING = "following", "failing"
#: A running watcher says so this often; one not heard from for SILENT_SECONDS no longer runs.
HEARTBEAT_SECONDS, SILENT_SECONDS = 60.0, 180.0
#: A write that takes longer is given up (the next one tries again).
WRITE_SECONDS = 10.0
#: The longest error kept: the row is for people, and a few lines tell them what went wrong.
ERROR_CHARS = 2000

_SECRET_NAME = re.compile(r"password|passwd|secret|token|private_key", re.I)
_URL_USER = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/@]+@", re.I)
_SECRET_VALUE = re.compile(
    r"\b(password|passwd|pwd|[a-z_]*token|[a-z_]*secret|sid)(['\"]?\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.I,
)
_BEARER = re.compile(r"\b(bearer|oauth)\s+[^\s,;'\"]+", re.I)


class Log(Protocol):
    """What a watcher logs with: the trigger's logger."""

    def warning(self, message: str, /, *args: Any) -> Any: ...


def sources(entry: SyncObject) -> tuple[str, ...]:
    """The watchers of an object's DAG (``assets.wake_assets``): none without ``events``."""
    if not entry.events:
        return ()
    return (CHANGE_EVENTS, WAREHOUSE_EDITS) if entry.direction == "bidirectional" else (CHANGE_EVENTS,)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: ``secrets`` (a connection's password, a session), a URL's user and
    password, ``password=``/``token:``-like values and bearer tokens."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_USER.sub(r"\1***@", text)
    text = _SECRET_VALUE.sub(r"\1\2***", text)
    return _BEARER.sub(r"\1 ***", text)


def secrets_of(conn: Connection) -> set[str]:
    """What of an Airflow connection must never be shown: its password and extras named like secrets."""
    extras = {v for k, v in conn.extra_dejson.items() if isinstance(v, str) and _SECRET_NAME.search(k)}
    return ({conn.password or ""} | extras) - {""}


async def connect(conn_id: str, secrets: set[str], **options: Any) -> psycopg.AsyncConnection:
    """An autocommit asynchronous connection to the warehouse of ``conn_id`` (``options`` where its own
    settings say nothing); its password, an IAM token maybe, joins ``secrets``."""
    import psycopg

    from sfsync import warehouse

    args = await asyncio.to_thread(warehouse.connect_args, conn_id)
    if args.get("password"):
        secrets.add(str(args["password"]))
    return await psycopg.AsyncConnection.connect(**options | args | {"autocommit": True})


class Record:
    """A watcher's row in ``sfsync.watchers``. ``following``, ``failing`` and ``woken`` note its state (they
    neither wait nor fail); ``keep``, a task while the watcher runs, writes it.

    ``secrets`` is the watcher's own set: what it learns later (a session) is redacted here too.
    """

    def __init__(self, conn_id: str, sobject: str, source: str, log: Log, secrets: set[str]) -> None:
        self.conn_id, self.sobject, self.source = conn_id, sobject, source
        self.log, self.secrets = log, secrets
        self.state: str | None = None  # nothing to say before the first connect's outcome
        self.error: str | None = None
        self.wakes = 0  # since the last write
        self._since = 0.0  # these by time.monotonic()
        self._retry_at: float | None = None
        self._woken_at: float | None = None
        self._noted = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None

    def following(self) -> None:
        if self.state != FOLLOWING:
            self._retry_at = None
            self._become(FOLLOWING)

    def failing(self, error: str, retry_in: float) -> None:
        self.error, self._retry_at = error[:ERROR_CHARS], time.monotonic() + retry_in
        self._become(FAILING)

    def woken(self) -> None:
        self.wakes, self._woken_at = self.wakes + 1, time.monotonic()
        self._noted.set()

    def _become(self, state: str) -> None:
        if state != self.state:
            self.state, self._since = state, time.monotonic()
        self._noted.set()

    async def keep(self) -> None:
        """Write the state whenever it changes, and every HEARTBEAT_SECONDS, until cancelled."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._noted.wait(), HEARTBEAT_SECONDS)
                self._noted.clear()
                if self.state is None:
                    continue
                try:
                    await asyncio.wait_for(self._write(), WRITE_SECONDS)
                except Exception as failure:  # the warehouse may be what is down: the watcher goes on
                    error = redact(f"{type(failure).__name__}: {failure}", self.secrets)
                    self.log.warning("Could not record the watcher's state in the warehouse (%s)", error)
                    await self._close()
        finally:
            await self._close()

    async def _write(self) -> None:
        from sfsync import warehouse

        if self._conn is None:
            self._conn = await connect(self.conn_id, self.secrets)
        now, wakes = time.monotonic(), self.wakes
        await self._conn.execute(
            warehouse.statement("state/record_watcher"),
            {
                "sobject": self.sobject,
                "source": self.source,
                "state": self.state,
                "since_age": timedelta(seconds=now - self._since),
                "error": self.error,
                "retry_in": None
                if self._retry_at is None
                else timedelta(seconds=max(0.0, self._retry_at - now)),
                "woken_age": None if self._woken_at is None else timedelta(seconds=now - self._woken_at),
                "wakes": wakes,
                "silent": timedelta(seconds=SILENT_SECONDS),
            },
        )
        self.wakes -= wakes

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
