"""Usage counted over a rolling 24 hours: the API requests counted against the org's daily limit, and the
change events delivered to streaming clients. Kept in the store so that every server process on a data
directory shares one count."""

from __future__ import annotations

import sqlite3

from .database import Database, quote
from .schema import now_ms

_MINUTE_MS = 60_000
# Salesforce counts both over a rolling 24 hours, kept here in one-minute buckets.
_WINDOW_MINUTES = 24 * 60
# Enterprise Edition's allocation of delivered change events (CometD and Pub/Sub API) a day.
DELIVERED_EVENTS_LIMIT = 50_000


class Usage:
    """A rolling 24-hour count kept in ``table`` (one row per minute)."""

    def __init__(self, db: Database, table: str) -> None:
        self.db = db
        self.table = quote(table)
        with db.write_lock:
            db.conn().execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (minute INTEGER PRIMARY KEY, used INTEGER NOT NULL)"
            )

    def count(self, limit: int, n: int = 1) -> tuple[int, bool]:
        """Count ``n`` against the rolling 24-hour budget ``limit``; returns (used, allowed). Nothing is
        counted once the budget is used up."""
        minute = now_ms() // _MINUTE_MS
        with self.db.write_lock:
            conn = self.db.conn()
            used = self._used(conn, minute)
            if used >= limit:
                return used, False
            conn.execute(
                f"INSERT INTO {self.table} VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET used = used + ?",
                (minute, n, n),
            )
            conn.execute(f"DELETE FROM {self.table} WHERE minute <= ?", (minute - _WINDOW_MINUTES,))
            return used + n, True

    def used(self) -> int:
        """What was counted in the last 24 hours."""
        return self._used(self.db.conn(), now_ms() // _MINUTE_MS)

    def _used(self, conn: sqlite3.Connection, minute: int) -> int:
        sql = f"SELECT COALESCE(SUM(used), 0) FROM {self.table} WHERE minute > ?"
        return int(conn.execute(sql, (minute - _WINDOW_MINUTES,)).fetchone()[0])
