"""Refresh tokens of the connected apps, kept in the org's SQLite file so they outlive the server.

Salesforce issues a refresh token when a user authorises a connected app (the web-server flow); it stays
valid until revoked. The local org has no authorisation page: each user has one live refresh token per
connected app, issued the first time it is asked for (``python -m localorg connection`` prints them) and
replaced by a new one once revoked. A revoked token stays revoked, across restarts too.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

from .datadir import DB_FILE, FILE_MODE, make_private

TABLE = "_refresh_tokens"


def ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (token TEXT PRIMARY KEY, client_id TEXT NOT NULL, "
        "username TEXT NOT NULL, issued INTEGER NOT NULL, revoked INTEGER)"
    )
    conn.execute(f'CREATE INDEX IF NOT EXISTS "{TABLE}_owner" ON {TABLE} (client_id, username)')


def open_store(data_dir: Path) -> sqlite3.Connection:
    """A connection to the data directory's store with the refresh token table, without opening the org
    (``connection`` prints tokens whether or not a server runs); the caller closes it."""
    make_private(data_dir)
    path = data_dir / DB_FILE
    if not path.exists():
        path.touch(FILE_MODE)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    ensure_table(conn)
    return conn


def issue(conn: sqlite3.Connection, client_id: str, username: str, now_ms: int) -> str:
    """The user's live refresh token for the app, issued now if it has none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            f"SELECT token FROM {TABLE} WHERE client_id = ? AND username = ? AND revoked IS NULL "
            "ORDER BY issued DESC LIMIT 1",
            (client_id, username),
        ).fetchone()
        if row is not None:
            token: str = row[0]
        else:
            # Salesforce's refresh tokens are opaque strings starting "5Aep861".
            token = "5Aep861" + secrets.token_urlsafe(60)
            conn.execute(
                f"INSERT INTO {TABLE} (token, client_id, username, issued) VALUES (?, ?, ?, ?)",
                (token, client_id, username, now_ms),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return token


def owner(conn: sqlite3.Connection, token: str) -> tuple[str, str] | None:
    """(client_id, username) of a live refresh token, or None when it is unknown or revoked."""
    row = conn.execute(
        f"SELECT client_id, username FROM {TABLE} WHERE token = ? AND revoked IS NULL", (token,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def revoke(conn: sqlite3.Connection, token: str, now_ms: int) -> bool:
    """Revoke a live refresh token; False when it is unknown or already revoked."""
    cur = conn.execute(f"UPDATE {TABLE} SET revoked = ? WHERE token = ? AND revoked IS NULL", (now_ms, token))
    return cur.rowcount == 1
