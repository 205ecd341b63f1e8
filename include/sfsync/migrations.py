"""The warehouse schema's versioned migrations (``sql/migrations`` beside the engine), applied by the sync.

The sync applies pending migrations itself on first use (``prepare_warehouse``), never a person by hand.
Migrations run in one transaction under an advisory lock, so DAG runs that start together apply each
migration exactly once, and a failed migration leaves the schema as it was.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "sql" / "migrations"
# Any fixed 64-bit key works; it only has to be the same for every process that migrates this warehouse.
MIGRATION_LOCK = 0x5F5_1C_0001


class MigrationError(RuntimeError):
    """The warehouse schema cannot be brought to this version of sfsync."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file, e.g. ``0001_bookkeeping.sql``."""

    path: Path

    @cached_property
    def version(self) -> int:
        return int(self.path.name.split("_", 1)[0])

    @cached_property
    def sql(self) -> str:
        return self.path.read_text()

    @cached_property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, by version; names must be ``NNNN_description.sql``."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", path.name):
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        found.append(Migration(path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must run 1..{len(found)} without gaps, found {versions}")
    return found


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations; return the names of those applied (empty when up to date)."""
    known = migrations(directory)
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute("CREATE SCHEMA IF NOT EXISTS sfsync")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS sfsync.schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied: dict[int, str] = dict(
            conn.execute("SELECT version, checksum FROM sfsync.schema_migrations").fetchall()
        )
        if applied and max(applied) > len(known):
            raise MigrationError(
                f"the warehouse schema is at version {max(applied)}, newer than this sfsync "
                f"(which knows {len(known)}): upgrade sfsync"
            )
        for migration in known:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.path.name} changed after it was applied to the warehouse; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO sfsync.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                [migration.version, migration.path.name, migration.checksum],
            )
            applied_now.append(migration.path.name)
    return applied_now
