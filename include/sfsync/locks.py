"""One lock per object and direction, so that work on one object never runs twice at once.

``max_active_runs=1`` keeps one DAG's runs apart, but not a manual run beside a scheduled one of another
DAG (the full load), nor two deployments on one warehouse. A reconcile that lists Ids while a pull merges
would flag the records created meanwhile as deleted; two pushes of one object would send every change
twice. So each step holds a Postgres advisory lock on its object and direction for as long as it works:
``inbound`` for the pull, the reconciliation and the full load's slices (which share it among themselves),
``outbound`` for the push. A session lock dies with its connection, so a killed worker never leaves one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import LiteralString

import psycopg

log = logging.getLogger(__name__)

#: A step waits this long for the one before it, then fails naming who holds the lock: well within a
#: task's time limit (30 minutes by default), so the task reports why.
LOCK_WAIT = timedelta(minutes=10)


@contextmanager
def holding(conn: psycopg.Connection, sobject: str, direction: str, shared: bool = False) -> Iterator[None]:
    """Hold the lock of ``sobject`` and ``direction`` on ``conn`` (autocommit) while the block runs,
    waiting for it, and saying so in the log, when another run holds it."""
    key = f"sfsync.{direction}.{sobject}"
    kind = "_shared" if shared else ""
    got = conn.execute(f"SELECT pg_try_advisory_lock{kind}(hashtextextended(%s, 0))", [key]).fetchone()
    if not (got and got[0]):
        holder = conn.execute(
            "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND (l.classid::bigint << 32 | l.objid::bigint) = hashtextextended(%s, 0) LIMIT 1",
            [key],
        ).fetchone()
        log.info(
            "%s: waiting for another %s step of %s to finish (held by backend %s)",
            sobject, direction, sobject, holder[0] if holder else "that just ended",
        )  # fmt: skip
        started = time.monotonic()
        try:
            conn.execute(f"SET lock_timeout = {int(LOCK_WAIT.total_seconds() * 1000)}")
            conn.execute(f"SELECT pg_advisory_lock{kind}(hashtextextended(%s, 0))", [key])
        except psycopg.errors.LockNotAvailable:
            raise TimeoutError(
                f"{sobject}: another {direction} step held its lock for over {LOCK_WAIT}"
            ) from None
        finally:
            _quietly(conn, "RESET lock_timeout")
        log.info("%s: waited %.1f s for the %s lock", sobject, time.monotonic() - started, direction)
    try:
        yield
    finally:
        _quietly(conn, f"SELECT pg_advisory_unlock{kind}(hashtextextended(%s, 0))", [key])


@contextmanager
def trying(conn: psycopg.Connection, name: str) -> Iterator[bool]:
    """Whether this step got the lock ``name`` (held while the block runs), without waiting: for work one
    step does for all, such as reading the org's API usage again."""
    key = f"sfsync.{name}"
    got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key]).fetchone()
    try:
        yield bool(got and got[0])
    finally:
        if got and got[0]:
            _quietly(conn, "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _quietly(conn: psycopg.Connection, statement: LiteralString, params: list[str] | None = None) -> None:
    # A connection still busy (a task timeout interrupted a statement) or gone ends its session, and the
    # session's locks with it: an error here would only hide the one being raised.
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    with suppress(psycopg.Error):
        conn.execute(statement, params)
