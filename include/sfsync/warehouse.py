"""The warehouse: its connection, the sync's own writes, its bookkeeping columns and the SQL files beside
the engine (``sql/``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent / "sql"
# Bookkeeping columns; Salesforce field names never start with an underscore, so these cannot clash.
SYNCED_AT, DELETED_AT, ROW_ID = "_sfsync_synced_at", "_sfsync_deleted_at", "_sfsync_row_id"
# Stamps the rows the sync COPYs straight into a table (copy_new), not those other writers insert.
SYNCED_NOW = "CASE WHEN current_setting('sfsync.origin', true) = 'salesforce' THEN now() END"
# Deleted records COPYed straight into a table, until copy_new stamps them in the same transaction: a
# partial index on this finds them without scanning the table, and holds no row otherwise.
UNDATED_DELETES = "isdeleted AND _sfsync_deleted_at IS NULL"


def connect(conn_id: str) -> psycopg.Connection:
    """A psycopg 3 connection to the warehouse named by the Airflow connection ``conn_id``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = cast(
        psycopg.Connection, PostgresHook(postgres_conn_id=conn_id).get_conn()
    )  # psycopg 3 with SQLA 2
    conn.autocommit = True  # transactions are explicit (conn.transaction()), never implicit
    return conn


def connect_args(conn_id: str) -> dict[str, Any]:
    """The keyword arguments psycopg connects with for the Airflow connection ``conn_id``, built as
    ``connect`` builds them (extras, IAM tokens): for a connection the hook does not open, such as the
    asynchronous one a watcher listens on."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class _Arguments(PostgresHook):
        def _create_connection(self, conn_args: dict[str, Any]) -> Any:  # what get_conn would connect with
            return conn_args

    return cast(dict[str, Any], _Arguments(postgres_conn_id=conn_id).get_conn())


def statement(name: str) -> sql.SQL:
    """A statement from ``sql/`` beside this module (``"merge/upsert"``), read once."""
    return sql.SQL(_read_sql(name))  # our own files, not user input


@cache
def _read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def as_the_sync(conn: psycopg.Connection) -> None:
    """Mark the rest of the caller's transaction as the sync's own writes: the write guards (capture for
    write-back, refusal of other writers) skip them, so nothing echoes back to Salesforce. Only on the
    sync's own connection: the guards skip a write only when the role that attached them makes it too."""
    conn.execute("SELECT set_config('sfsync.origin', 'salesforce', true)")
