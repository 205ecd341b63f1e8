"""Versioned migrations, applied by the sync itself: idempotent, concurrent-safe and tamper-evident."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from sfsync.migrations import MIGRATIONS_DIR, MigrationError, migrate, migrations

pytestmark = pytest.mark.integration

SCHEMA_QUERY = """
SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema IN ('salesforce', 'sfsync')
ORDER BY 1, 2, 3
"""


def schema_of(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_QUERY).fetchall()


def test_applied_twice_leaves_the_same_schema(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        first = migrate(conn)
        after_first = schema_of(warehouse_url)
        second = migrate(conn)
    assert first == [m.path.name for m in migrations()] and second == []
    assert after_first == schema_of(warehouse_url)
    assert ("sfsync", "sync_state", "watermark", "timestamp with time zone", "YES", None) in after_first


def test_concurrent_runs_apply_each_migration_once(warehouse_url):
    def run(_):
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            return migrate(conn)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, range(6)))
    assert sorted(results, key=len) == [[]] * 5 + [[m.path.name for m in migrations()]]
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM sfsync.schema_migrations").fetchone() == (
            len(migrations()),
        )


def test_new_migration_is_applied_on_top(warehouse_url, tmp_path):
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn, tmp_path)
        version = len(migrations()) + 1
        (tmp_path / f"{version:04d}_add_note.sql").write_text("ALTER TABLE sfsync.sync_state ADD note text;")
        assert migrate(conn, tmp_path) == [f"{version:04d}_add_note.sql"]
    assert ("sfsync", "sync_state", "note", "text", "YES", None) in schema_of(warehouse_url)


def test_failed_migration_rolls_back_completely(warehouse_url, tmp_path):
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    version = len(migrations()) + 1
    (tmp_path / f"{version:04d}_broken.sql").write_text("CREATE TABLE sfsync.half (x int); SELECT 1/0;")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn, tmp_path)
    assert schema_of(warehouse_url) == []


def test_edited_migration_is_refused(warehouse_url, tmp_path):
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn, tmp_path)
        first = sorted(tmp_path.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=f"{first.name} changed after it was applied"):
            migrate(conn, tmp_path)


def test_newer_warehouse_is_refused(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO sfsync.schema_migrations VALUES (999, '0999_future.sql', 'x')")
        with pytest.raises(MigrationError, match="at version 999, newer than this sfsync"):
            migrate(conn)


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="1_init.sql: migration files are named NNNN_description.sql"):
        migrations(tmp_path)
