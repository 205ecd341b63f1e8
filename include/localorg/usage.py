"""API usage: the requests counted against the org's rolling 24-hour limit, kept in the store so that
every server process on a data directory shares one count."""

from __future__ import annotations

import sqlite3

from .database import Database
from .schema import now_ms

_MINUTE_MS = 60_000
# Salesforce counts API requests over a rolling 24 hours, kept here in one-minute buckets.
_API_WINDOW_MINUTES = 24 * 60


class ApiUsage:
    """The org's count of API requests."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def count(self, limit: int) -> tuple[int, bool]:
        """Count one API request against the rolling 24-hour budget; returns (used, allowed)."""
        minute = now_ms() // _MINUTE_MS
        with self.db.write_lock:
            conn = self.db.conn()
            used = self._used(conn, minute)
            if used >= limit:
                return used, False
            conn.execute(
                "INSERT INTO _api_requests VALUES (?, 1) ON CONFLICT (minute) DO UPDATE SET used = used + 1",
                (minute,),
            )
            conn.execute("DELETE FROM _api_requests WHERE minute <= ?", (minute - _API_WINDOW_MINUTES,))
            return used + 1, True

    def used(self) -> int:
        """API requests counted in the last 24 hours."""
        return self._used(self.db.conn(), now_ms() // _MINUTE_MS)

    @staticmethod
    def _used(conn: sqlite3.Connection, minute: int) -> int:
        sql = "SELECT COALESCE(SUM(used), 0) FROM _api_requests WHERE minute > ?"
        return int(conn.execute(sql, (minute - _API_WINDOW_MINUTES,)).fetchone()[0])
