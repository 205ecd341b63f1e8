"""The merge statement on its own: newer wins, replays are no-ops, same-second changes are not lost."""

import psycopg
import pytest

from sfsync import load, migrations, tables, warehouse
from sfsync.columns import Column

pytestmark = pytest.mark.integration

COLUMNS = [
    Column("Id", "id", "text"),
    Column("IsDeleted", "isdeleted", "boolean"),
    Column("SystemModstamp", "systemmodstamp", "timestamptz"),
    Column("Email", "email", "text"),
]
NAMES = [c.name for c in COLUMNS]
statement = warehouse.statement


def merge(conn, rows):
    load.create_staging(conn, "lead", "stage__test", NAMES)
    load.copy_rows(conn, "stage__test", NAMES, rows)
    with conn.transaction():
        return load.merge_staged(conn, "lead", "stage__test", NAMES)


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn)
        tables.ensure_table(conn, "lead", COLUMNS, bidirectional=True)
        yield conn


def test_newer_applies_replay_skips_older_never_overwrites(conn):
    t0, t1 = "2025-03-01T12:00:00.000+0000", "2025-03-01T12:00:05.000+0000"
    assert merge(conn, [("00Q1", False, t0, "a@x.com")]) == {
        "new": 1,
        "updated": 0,
        "deleted": 0,
        "skipped": 0,
    }
    assert merge(conn, [("00Q1", False, t0, "a@x.com")])["skipped"] == 1
    assert merge(conn, [("00Q1", False, t1, "b@x.com")])["updated"] == 1
    assert merge(conn, [("00Q1", False, t0, "old@x.com")])["skipped"] == 1
    assert conn.execute("SELECT email FROM salesforce.lead").fetchone() == ("b@x.com",)


def test_second_change_within_the_same_second_is_not_lost(conn):
    stamp = "2025-03-01T12:00:00.000+0000"  # Salesforce stamps whole seconds: both versions share it
    merge(conn, [("00Q1", False, stamp, "first@x.com")])
    assert merge(conn, [("00Q1", False, stamp, "second@x.com")])["updated"] == 1
    assert conn.execute("SELECT email FROM salesforce.lead").fetchone() == ("second@x.com",)


def test_delete_is_flagged_with_the_time_it_was_seen_and_undelete_clears_it(conn):
    merge(conn, [("00Q1", False, "2025-03-01T12:00:00Z", None)])
    assert merge(conn, [("00Q1", True, "2025-03-01T12:01:00Z", None)])["deleted"] == 1
    (seen,) = conn.execute("SELECT _sfsync_deleted_at FROM salesforce.lead").fetchone()
    assert seen is not None
    merge(conn, [("00Q1", True, "2025-03-01T12:01:00Z", "x@x.com")])  # same stamp, other content
    assert conn.execute("SELECT _sfsync_deleted_at FROM salesforce.lead").fetchone() == (seen,)
    merge(conn, [("00Q1", False, "2025-03-01T12:02:00Z", None)])
    assert conn.execute("SELECT isdeleted, _sfsync_deleted_at FROM salesforce.lead").fetchone() == (
        False,
        None,
    )


def test_bidirectional_table_takes_rows_before_salesforce_gives_an_id(conn):
    conn.execute("INSERT INTO salesforce.lead (email) VALUES ('new@x.com'), ('other@x.com')")
    merge(conn, [("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com")])
    assert conn.execute("SELECT count(*), count(id) FROM salesforce.lead").fetchone() == (3, 1)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO salesforce.lead (id) VALUES ('00Q1')")


def rows_of(conn):
    """The table as the merge left it; its own clocks only as whether they are set."""
    return conn.execute(
        "SELECT id, isdeleted, systemmodstamp, email, _sfsync_synced_at IS NOT NULL,"
        " _sfsync_deleted_at IS NOT NULL FROM salesforce.lead ORDER BY id"
    ).fetchall()


def test_rows_new_to_the_table_are_inserted_plainly_with_the_general_merges_outcome(conn, monkeypatch):
    t0, t1 = "2025-03-01T12:00:00Z", "2025-03-01T12:00:05Z"
    rows = [("00Q1", False, t0, "a@x.com"), ("00Q2", True, t1, "b@x.com"), ("00Q3", False, t1, None)]
    used = []
    monkeypatch.setattr(load, "statement", lambda name: used.append(name) or statement(name))
    assert merge(conn, rows) == {"new": 2, "updated": 0, "deleted": 1, "skipped": 0}
    assert "merge/on_conflict" not in used, "no staged Id was in the table: plain inserts"
    plain = rows_of(conn)

    conn.execute("SELECT set_config('sfsync.origin', 'salesforce', false)")  # a delete the guard lets pass
    conn.execute("DELETE FROM salesforce.lead")
    conn.execute("RESET sfsync.origin")
    merge(conn, rows[:1])
    used.clear()
    assert merge(conn, rows) == {"new": 1, "updated": 0, "deleted": 1, "skipped": 1}
    assert "merge/on_conflict" in used, "00Q1 was in the table: the general merge"
    assert rows_of(conn) == plain


def test_a_plain_insert_that_meets_a_stored_id_fails_whole_and_its_retry_merges(conn, monkeypatch):
    stamp = "2025-03-01T12:00:00Z"
    merge(conn, [("00Q1", False, stamp, "old@x.com")])
    before = rows_of(conn)
    # A writer stored 00Q1 after the check found none of the staged Ids (here: the check is fooled).
    with monkeypatch.context() as patched, pytest.raises(psycopg.errors.UniqueViolation):
        patched.setattr(load, "holds_staged_ids", lambda *args: False)
        merge(conn, [("00Q2", False, stamp, "b@x.com"), ("00Q1", False, "2025-03-01T12:00:05Z", "new@x.com")])
    assert rows_of(conn) == before, "nothing of the failed insert stays"
    retried = merge(
        conn, [("00Q2", False, stamp, "b@x.com"), ("00Q1", False, "2025-03-01T12:00:05Z", "new@x.com")]
    )
    assert retried == {"new": 1, "updated": 1, "deleted": 0, "skipped": 0}
    assert [row[3] for row in rows_of(conn)] == ["new@x.com", "b@x.com"]


def csv_pages(rows):
    """Rows as one Bulk CSV page: a header row, every value quoted, nulls as empty strings."""
    lines = ['"Id","IsDeleted","SystemModstamp","Email"']
    lines += [
        ",".join(f'"{"" if v is None else str(v).lower() if isinstance(v, bool) else v}"' for v in row)
        for row in rows
    ]
    return [[("\n".join(lines) + "\n").encode()]]


def whole_table(conn):
    """Every column; the sync's clocks as whether each is that of the row's sync, as the merge sets them."""
    return conn.execute(
        "SELECT _sfsync_row_id, id, isdeleted, systemmodstamp, email, _sfsync_synced_at IS NOT NULL,"
        " _sfsync_deleted_at IS NOT DISTINCT FROM CASE WHEN isdeleted THEN _sfsync_synced_at END"
        " FROM salesforce.lead ORDER BY _sfsync_row_id"
    ).fetchall()


def fresh_lead_table(conn):
    conn.execute("DROP TABLE salesforce.lead")
    tables.ensure_table(conn, "lead", COLUMNS, bidirectional=True, sobject="Lead")


def test_copying_straight_into_a_table_without_those_ids_leaves_what_the_merge_leaves(conn):
    t0, t1 = "2025-03-01T12:00:00.000Z", "2025-03-01T12:00:05.000Z"
    rows = [("00Q1", False, t0, "a@x.com"), ("00Q2", True, t1, "b@x.com"), ("00Q3", False, t1, None)]
    fresh_lead_table(conn)
    load.create_staging(conn, "lead", "stage__test", NAMES)
    load.copy_csv(conn, "stage__test", NAMES, csv_pages(rows))
    with conn.transaction():
        merged = load.merge_staged(conn, "lead", "stage__test", NAMES)
    general = whole_table(conn)

    fresh_lead_table(conn)
    with conn.transaction():
        copied = load.copy_new(conn, "lead", NAMES, csv_pages(rows))
    assert copied == merged == {"new": 2, "updated": 0, "deleted": 1, "skipped": 0}
    assert whole_table(conn) == general
    assert conn.execute("SELECT count(*) FROM sfsync.outbox").fetchone() == (0,), "the sync's own rows"
    conn.execute("INSERT INTO salesforce.lead (email) VALUES ('new@x.com')")  # no Id yet: still possible
    assert conn.execute(
        "SELECT _sfsync_row_id IS NOT NULL, _sfsync_synced_at FROM salesforce.lead WHERE id IS NULL"
    ).fetchone() == (True, None), "another writer's row is not stamped as synced"
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO salesforce.lead (id) VALUES ('00Q1')")


def id_key(conn, table: str = "lead", kind: str = "u"):
    """The table's key on id (``u``nique, or ``p``rimary for an inbound-only table): its name, definition
    and index (a rebuilt index is a new one)."""
    return conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), conindid FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = %s",
        [f"salesforce.{table}", kind],
    ).fetchall()


def test_a_copy_into_an_empty_table_may_build_its_id_key_once_afterwards(conn):
    stamp = "2025-03-01T12:00:00.000Z"
    rows = [("00Q1", False, stamp, "a@x.com"), ("00Q2", True, stamp, None), ("00Q3", False, stamp, None)]
    fresh_lead_table(conn)
    with conn.transaction():
        plain = load.copy_new(conn, "lead", NAMES, csv_pages(rows))
    expected, [(name, definition, index)] = whole_table(conn), id_key(conn)

    fresh_lead_table(conn)
    [(_, _, index)] = id_key(conn)
    with conn.transaction():
        assert load.copy_new(conn, "lead", NAMES, csv_pages(rows), exclusive=True) == plain
    assert whole_table(conn) == expected
    [(rebuilt_name, rebuilt_definition, rebuilt)] = id_key(conn)
    assert (rebuilt_name, rebuilt_definition) == (name, definition) and rebuilt != index, "built anew"

    fresh_lead_table(conn)
    key = id_key(conn)
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        load.copy_new(conn, "lead", NAMES, csv_pages([*rows, rows[0]]), exclusive=True)
    assert whole_table(conn) == [] and id_key(conn) == key, "a duplicate Id fails it all, key kept"

    fresh_lead_table(conn)
    key = id_key(conn)
    conn.execute("CREATE TABLE public.lead_note (lead text REFERENCES salesforce.lead (id))")
    try:  # another table's foreign key needs the key: it stays, and is filled row by row
        with conn.transaction():
            load.copy_new(conn, "lead", NAMES, csv_pages(rows), exclusive=True)
        assert whole_table(conn) == expected and id_key(conn) == key
    finally:
        conn.execute("DROP TABLE public.lead_note")
    with conn.transaction():  # a table with rows keeps its key too
        load.copy_new(conn, "lead", NAMES, csv_pages([("00Q4", False, stamp, None)]), exclusive=True)
    assert id_key(conn) == key

    fresh_lead_table(conn)
    conn.execute("ALTER TABLE salesforce.lead CLUSTER ON lead_id_key")
    key = id_key(conn)
    with conn.transaction():  # a user's CLUSTER order stays what it was
        load.copy_new(conn, "lead", NAMES, csv_pages(rows), exclusive=True)
    assert id_key(conn) == key


def test_an_inbound_only_tables_primary_key_is_rebuilt_before_the_deletes_are_stamped(conn):
    conn.execute("DROP TABLE IF EXISTS salesforce.account")
    tables.ensure_table(conn, "account", COLUMNS, bidirectional=False, sobject="Account")
    [(name, definition, index)] = id_key(conn, "account", "p")
    conn.execute("CREATE PUBLICATION sfsync_test_all FOR ALL TABLES")  # updates need a replica identity
    try:
        rows = [("0011", True, "2025-03-01T12:00:00Z", None), ("0012", False, "2025-03-01T12:00:00Z", None)]
        with conn.transaction():
            copied = load.copy_new(conn, "account", NAMES, csv_pages(rows), exclusive=True)
    finally:
        conn.execute("DROP PUBLICATION sfsync_test_all")
    assert copied == {"new": 1, "updated": 0, "deleted": 1, "skipped": 0}
    [(rebuilt_name, rebuilt_definition, rebuilt)] = id_key(conn, "account", "p")
    assert (rebuilt_name, rebuilt_definition) == (name, definition) == ("account_pkey", "PRIMARY KEY (id)")
    assert rebuilt != index, "built anew, after the COPY"
    assert conn.execute(
        "SELECT id, _sfsync_deleted_at IS NOT NULL FROM salesforce.account ORDER BY id"
    ).fetchall() == [("0011", True), ("0012", False)]


def test_copying_into_a_table_that_holds_one_of_the_ids_fails_whole(conn):
    stamp = "2025-03-01T12:00:00.000Z"
    merge(conn, [("00Q1", False, stamp, "old@x.com")])
    before = whole_table(conn)
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        load.copy_new(
            conn, "lead", NAMES, csv_pages([("00Q2", True, stamp, None), ("00Q1", False, stamp, None)])
        )
    assert whole_table(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM salesforce.lead WHERE " + warehouse.UNDATED_DELETES
    ).fetchone() == (0,)


def test_copying_into_an_inbound_only_table_or_one_without_isdeleted(conn):
    tables.ensure_table(conn, "account", COLUMNS, bidirectional=False, sobject="Account")
    with conn.transaction():
        copied = load.copy_new(
            conn, "account", NAMES, csv_pages([("0011", True, "2025-03-01T12:00:00Z", None)])
        )
    assert copied == {"new": 0, "updated": 0, "deleted": 1, "skipped": 0}, (
        "the write guard lets the sync pass"
    )
    user = [COLUMNS[0], COLUMNS[2]]  # User has no IsDeleted: the column's default
    tables.ensure_table(conn, "user", user, bidirectional=False, sobject="User")
    page = [[b'"Id","SystemModstamp"\n"0051","2025-03-01T12:00:00Z"\n']]
    with conn.transaction():
        copied = load.copy_new(conn, "user", ["id", "systemmodstamp"], page)
    assert copied == {"new": 1, "updated": 0, "deleted": 0, "skipped": 0}
    assert conn.execute(
        "SELECT isdeleted, _sfsync_synced_at IS NOT NULL, _sfsync_deleted_at FROM salesforce.user"
    ).fetchone() == (False, True, None)


def test_a_type_change_widens_the_column_and_keeps_every_value(conn):
    conn.execute("DROP TABLE IF EXISTS salesforce.invoice__c")

    def ensure(score: str, due: str) -> list[str]:
        columns = [*COLUMNS[:3], Column("Score__c", "score__c", score), Column("Due__c", "due__c", due)]
        return tables.ensure_table(conn, "invoice__c", columns, False, "Invoice__c")

    def stored() -> tuple:
        return conn.execute(
            "SELECT score__c::text, due__c::text, pg_typeof(score__c)::text, pg_typeof(due__c)::text"
            " FROM salesforce.invoice__c"
        ).fetchone()

    ensure("numeric(5,1)", "date")
    with conn.transaction():
        warehouse.as_the_sync(conn)
        conn.execute(
            "INSERT INTO salesforce.invoice__c (id, score__c, due__c) VALUES ('a0B1', 1234.5, '2025-03-01')"
        )
    changed = ensure("numeric(6,3)", "timestamptz")
    assert "widened score__c from numeric(5,1) to numeric(7,3)" in changed
    assert stored() == ("1234.500", "2025-03-01 00:00:00+00", "numeric", "timestamp with time zone")
    ensure("date", "timestamptz")
    assert stored() == ("1234.500", "2025-03-01 00:00:00+00", "text", "timestamp with time zone"), (
        "a value with no common type keeps its text"
    )
