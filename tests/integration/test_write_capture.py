"""Write-back capture in the warehouse: other writers' changes to bidirectional tables land in the outbox
(changed fields only, old and new values, same transaction); the sync's own writes do not; tables synced
from Salesforce only refuse other writers."""

import psycopg
import pytest

from sfsync import load, migrations, tables
from sfsync.columns import Column

pytestmark = pytest.mark.integration

COLUMNS = [  # as describe has them: Salesforce sets the first three itself
    Column("Id", "id", "text", createable=False, updateable=False),
    Column("IsDeleted", "isdeleted", "boolean", createable=False, updateable=False),
    Column("SystemModstamp", "systemmodstamp", "timestamptz", createable=False, updateable=False),
    Column("Email", "email", "text"),
    Column("Title", "title", "text"),
]
NAMES = [c.name for c in COLUMNS]


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn)
        tables.ensure_table(conn, "lead", COLUMNS, True, "Lead")
        tables.ensure_table(conn, "account", COLUMNS[:3], False, "Account")
        yield conn


def sync_rows(conn, table, rows):
    names = NAMES[: len(rows[0])]
    load.create_staging(conn, table, "stage__t", names)
    load.copy_rows(conn, "stage__t", names, rows)
    with conn.transaction():
        return load.merge_staged(conn, table, "stage__t", names)


def outbox(conn):
    return conn.execute(
        "SELECT sobject, sfid, operation, changed FROM sfsync.outbox ORDER BY change_id"
    ).fetchall()


def test_the_syncs_own_writes_are_not_captured(conn):
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com", "CTO")])
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:05:00Z", "b@x.com", "CTO")])
    assert outbox(conn) == []


def test_other_writers_changes_are_captured_with_changed_fields_only(conn):
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com", "CTO")])
    conn.execute("UPDATE salesforce.lead SET title = 'CEO' WHERE id = '00Q1'")
    conn.execute("UPDATE salesforce.lead SET title = 'CEO' WHERE id = '00Q1'")  # no change: nothing to send
    conn.execute("INSERT INTO salesforce.lead (email) VALUES ('new@x.com')")
    assert outbox(conn) == [
        ("Lead", "00Q1", "update", {"title": {"old": "CTO", "new": "CEO"}}),
        ("Lead", None, "insert", {"email": {"old": None, "new": "new@x.com"}}),
    ]


def test_capture_is_part_of_the_writers_transaction(conn):
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("INSERT INTO salesforce.lead (email) VALUES ('gone@x.com')")
        conn.execute("SELECT 1/0")
    assert outbox(conn) == []


def test_deletes_are_refused_unless_the_registry_allows_them(conn):
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com", None)])
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="deleting rows is not written back to Salesforce"
    ):
        conn.execute("DELETE FROM salesforce.lead WHERE id = '00Q1'")
    assert "trigger sfsync_capture(Lead, deletes)" in tables.ensure_table(
        conn, "lead", COLUMNS, True, "Lead", allow_delete=True
    )
    conn.execute("DELETE FROM salesforce.lead WHERE id = '00Q1'")
    (captured,) = outbox(conn)
    assert captured[:3] == ("Lead", "00Q1", "delete") and captured[3]["email"] == {
        "old": "a@x.com",
        "new": None,
    }
    assert tables.ensure_table(conn, "lead", COLUMNS, True, "Lead", allow_delete=True) == [], (
        "unchanged: kept"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO salesforce.account (id) VALUES ('001X')",
        "UPDATE salesforce.account SET isdeleted = true",
        "DELETE FROM salesforce.account",
        "TRUNCATE salesforce.account",
    ],
)
def test_tables_synced_from_salesforce_only_refuse_other_writers(conn, statement):
    sync_rows(conn, "account", [("001A", False, "2025-03-01T12:00:00Z")])
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"salesforce.account is synced from Salesforce only"
    ):
        conn.execute(statement)
    assert conn.execute("SELECT id, isdeleted FROM salesforce.account").fetchall() == [("001A", False)]
    assert sync_rows(conn, "account", [("001A", True, "2025-03-01T12:01:00Z")])["deleted"] == 1, (
        "the sync still may"
    )


def test_truncating_a_bidirectional_table_is_refused(conn):
    """TRUNCATE fires no row trigger: it would empty the table uncaptured, under pending changes."""
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com", "CTO")])
    conn.execute("UPDATE salesforce.lead SET title = 'CEO' WHERE id = '00Q1'")
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege,
        match=r"salesforce.lead: TRUNCATE is not written back to Salesforce",
    ):
        conn.execute("TRUNCATE salesforce.lead")
    assert conn.execute("SELECT id, title FROM salesforce.lead").fetchall() == [("00Q1", "CEO")]
    assert len(outbox(conn)) == 1


def test_a_column_salesforce_would_not_take_is_refused_in_the_writers_statement(conn):
    sync_rows(conn, "lead", [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com", "CTO")])
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"systemmodstamp cannot be updated"):
        conn.execute("UPDATE salesforce.lead SET title = 'CEO', systemmodstamp = now() WHERE id = '00Q1'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"id cannot be created in Salesforce"):
        conn.execute("INSERT INTO salesforce.lead (id, email) VALUES ('00Q2', 'b@x.com')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"id cannot be updated"):
        conn.execute("UPDATE salesforce.lead SET id = '00Q3' WHERE id = '00Q1'")
    conn.execute("UPDATE salesforce.lead SET title = 'CEO' WHERE id = '00Q1'")
    assert [row[3] for row in outbox(conn)] == [{"title": {"old": "CTO", "new": "CEO"}}], (
        "only the good write"
    )


def test_guards_are_attached_once_and_follow_the_columns(conn):
    assert tables.ensure_table(conn, "lead", COLUMNS, True, "Lead") == [], "nothing changed: nothing redone"
    assert tables.ensure_table(conn, "account", COLUMNS[:3], False, "Account") == []
    read_only_title = [*COLUMNS[:4], Column("Title", "title", "text", createable=False, updateable=False)]
    assert tables.ensure_table(conn, "lead", read_only_title, True, "Lead") == [
        "trigger sfsync_writable(Lead, email, email)"
    ]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="title cannot be created"):
        conn.execute("INSERT INTO salesforce.lead (email, title) VALUES ('a@x.com', 'CTO')")


def test_a_table_whose_direction_changes_keeps_only_the_guards_of_the_new_one(conn):
    assert sorted(tables.ensure_table(conn, "lead", COLUMNS, False, "Lead")) == [
        "dropped trigger sfsync_capture",
        "dropped trigger sfsync_writable",
        "trigger sfsync_refuse(Lead)",
        "trigger sfsync_refuse_truncate(Lead)",
    ]
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"salesforce.lead is synced from Salesforce only"
    ):
        conn.execute("TRUNCATE salesforce.lead")
