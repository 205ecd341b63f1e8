"""Who may write what in the warehouse: only the sync's own role writes as the sync (a session setting
grants nothing), editors write the bidirectional tables they were granted and their changes are captured
for that object only, readers read, and nobody but the sync writes its bookkeeping in schema sfsync."""

import shutil
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sfsync import load, migrations, tables, warehouse
from sfsync.columns import Column

pytestmark = pytest.mark.integration

COLUMNS = [
    Column("Id", "id", "text", createable=False, updateable=False),
    Column("IsDeleted", "isdeleted", "boolean", createable=False, updateable=False),
    Column("SystemModstamp", "systemmodstamp", "timestamptz", createable=False, updateable=False),
    Column("Email", "email", "text"),
]
TABLES = [("lead", "Lead", True), ("contact", "Contact", True), ("account", "Account", False)]
Refused = psycopg.errors.InsufficientPrivilege
# A Lead change queued by hand: the push would write it to Salesforce as the integration user.
FORGED = (
    "INSERT INTO sfsync.outbox (sobject, row_id, sfid, operation, changed)"
    """ VALUES ('Lead', 1, '00Q1', 'update', '{"email": {"old": null, "new": "attacker@x.com"}}')"""
)


def prepare(conn) -> list[str]:
    """What the sync does to each object table at the start of a run."""
    return [
        f"{table}: {change}"
        for table, sobject, bidirectional in TABLES
        for change in tables.ensure_table(conn, table, COLUMNS, bidirectional, sobject)
    ]


@pytest.fixture
def conn(warehouse_url):
    """The sync's connection (in these tests a superuser, as the embedded warehouse's only user)."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn)
        prepare(conn)
        for table, prefix in [("lead", "00Q"), ("contact", "003"), ("account", "001")]:
            row = (f"{prefix}1", False, "2025-03-01T12:00:00Z", f"{table}@x.com")
            names = [c.name for c in COLUMNS]
            load.create_staging(conn, table, "stage__t", names)
            load.copy_rows(conn, "stage__t", names, [row])
            with conn.transaction():
                load.merge_staged(conn, table, "stage__t", names)
        yield conn


@pytest.fixture
def role(warehouse_url):
    """Make a login role (cluster-wide, so uniquely named and dropped after the test), optionally listed
    in sfsync.access; returns its name."""
    made = []
    admin = psycopg.connect(warehouse_url, autocommit=True)

    def make(access: str | None = None) -> str:
        name = f"sfsync_test_{uuid.uuid4().hex[:10]}"
        # The password is for a test server that asks for one; the embedded one trusts local connections.
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(name))
        )
        made.append(name)
        if access:
            admin.execute("INSERT INTO sfsync.access (grantee, access) VALUES (%s, %s)", [name, access])
        return name

    yield make
    with admin:
        for name in made:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))  # its grants here
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def connect_as(warehouse_url):
    opened = []

    def connect(name: str) -> psycopg.Connection:
        opened.append(
            psycopg.connect(make_conninfo(warehouse_url, user=name, password=name), autocommit=True)
        )
        return opened[-1]

    yield connect
    for conn in opened:
        conn.close()


def execute_naming(conn, statement: str, name: str) -> None:
    """Execute a statement (a GRANT or the like) naming role ``name`` as ``{role}``."""
    conn.execute(sql.SQL(statement).format(role=sql.Identifier(name)))  # type: ignore[arg-type]


def outbox(conn):
    return conn.execute(
        "SELECT sobject, sfid, operation, changed FROM sfsync.outbox ORDER BY change_id"
    ).fetchall()


def test_the_sync_grants_the_listed_roles_what_they_need_once(conn, role):
    editor, reader = role("edit"), role("read")
    conn.execute("INSERT INTO sfsync.access (grantee, access) VALUES ('sfsync_test_nobody', 'edit')")
    changes = prepare(conn)
    for table in ("lead", "contact"):
        assert f"{table}: granted SELECT, INSERT, UPDATE, DELETE to {editor}" in changes
        assert f"{table}: granted SELECT to {reader}" in changes
    assert {f"account: granted SELECT to {editor}", f"account: granted SELECT to {reader}"} <= set(changes)
    assert f"lead: granted USAGE on schema salesforce to {editor}" in changes
    assert len(changes) == 8, "a listed role that does not exist is skipped"
    assert prepare(conn) == [], "nothing granted twice"


def test_a_reader_reads_and_cannot_write(conn, role, connect_as):
    reader = role("read")
    prepare(conn)
    as_reader = connect_as(reader)
    assert as_reader.execute("SELECT id FROM salesforce.lead").fetchall() == [("00Q1",)]
    for statement in [
        "UPDATE salesforce.lead SET email = 'r@x.com'",
        "INSERT INTO salesforce.contact (email) VALUES ('r@x.com')",
        "DELETE FROM salesforce.account",
        "SELECT * FROM sfsync.outbox",
    ]:
        with pytest.raises(Refused, match="permission denied"):
            as_reader.execute(statement)


def test_an_editor_of_contact_writes_contact_only_and_is_captured_as_contact(conn, role, connect_as):
    editor = role()  # narrower than 'edit' in sfsync.access: granted by hand, as the README shows
    execute_naming(conn, "GRANT USAGE ON SCHEMA salesforce TO {role}", editor)
    execute_naming(conn, "GRANT SELECT, INSERT, UPDATE, DELETE ON salesforce.contact TO {role}", editor)
    as_editor = connect_as(editor)
    as_editor.execute("UPDATE salesforce.contact SET email = 'new@x.com' WHERE id = '0031'")
    as_editor.execute("INSERT INTO salesforce.contact (email) VALUES ('added@x.com')")
    assert outbox(conn) == [
        ("Contact", "0031", "update", {"email": {"old": "contact@x.com", "new": "new@x.com"}}),
        ("Contact", None, "insert", {"email": {"old": None, "new": "added@x.com"}}),
    ]
    as_editor.execute("SET sfsync.origin = 'salesforce'")  # no way to write as the sync
    as_editor.execute("UPDATE salesforce.contact SET email = 'quiet@x.com' WHERE id = '0031'")
    assert outbox(conn)[-1][:3] == ("Contact", "0031", "update"), "still captured"
    for statement, refusal in [
        ("UPDATE salesforce.lead SET email = 'attacker@x.com'", "permission denied for table lead"),
        ("UPDATE salesforce.account SET email = 'attacker@x.com'", "permission denied for table account"),
        ("DELETE FROM salesforce.account", "permission denied for table account"),
        (FORGED, "permission denied for schema sfsync"),
        ("TRUNCATE salesforce.contact", "permission denied for table contact"),
    ]:
        with pytest.raises(Refused, match=refusal):
            as_editor.execute(statement)
    assert [row[0] for row in outbox(conn)] == ["Contact"] * 3


def test_a_session_setting_grants_no_role_the_syncs_writes(conn, role, connect_as):
    """A role that does hold privileges on the tables (granted them all by an administrator) and sets
    sfsync.origin as the sync does is still refused on inbound tables and captured on the others."""
    other = role()
    execute_naming(conn, "GRANT USAGE ON SCHEMA salesforce TO {role}", other)
    execute_naming(conn, "GRANT ALL ON ALL TABLES IN SCHEMA salesforce TO {role}", other)
    as_other = connect_as(other)
    as_other.execute("SET sfsync.origin = 'salesforce'")
    for statement in [
        "UPDATE salesforce.account SET email = 'forged@x.com'",
        "DELETE FROM salesforce.account",
        "INSERT INTO salesforce.account (id) VALUES ('001F')",
        "TRUNCATE salesforce.account",
    ]:
        with pytest.raises(Refused, match="salesforce.account is synced from Salesforce only"):
            as_other.execute(statement)
    with pytest.raises(Refused, match="id cannot be updated"):
        as_other.execute("UPDATE salesforce.lead SET id = '00Q9'")
    with pytest.raises(Refused, match="TRUNCATE is not written back"):
        as_other.execute("TRUNCATE salesforce.lead")
    as_other.execute("UPDATE salesforce.lead SET email = 'seen@x.com'")
    assert outbox(conn) == [("Lead", "00Q1", "update", {"email": {"old": "lead@x.com", "new": "seen@x.com"}})]
    assert conn.execute("SELECT id, email FROM salesforce.account").fetchall() == [("0011", "account@x.com")]
    with conn.transaction():  # the sync itself still writes unseen
        warehouse.as_the_sync(conn)
        conn.execute("UPDATE salesforce.lead SET email = 'synced@x.com'")
        conn.execute("UPDATE salesforce.account SET email = 'synced@x.com'")
    assert len(outbox(conn)) == 1


def test_no_one_else_attaches_the_capture_to_a_table_of_their_own(conn, role, connect_as):
    """Granted to read the sync's bookkeeping, a role still cannot fire the capture, which writes to the
    outbox as the sync, from a trigger of its own."""
    other = role()
    execute_naming(conn, "CREATE SCHEMA {role} AUTHORIZATION {role}", other)
    execute_naming(conn, "GRANT USAGE ON SCHEMA sfsync TO {role}", other)
    execute_naming(conn, "GRANT SELECT ON ALL TABLES IN SCHEMA sfsync TO {role}", other)
    as_other = connect_as(other)
    execute_naming(as_other, "CREATE TABLE {role}.t (_sfsync_row_id bigint, id text)", other)
    with pytest.raises(Refused, match="permission denied for function sfsync.capture_change"):
        execute_naming(
            as_other,
            "CREATE TRIGGER t AFTER INSERT ON {role}.t FOR EACH ROW"
            " EXECUTE FUNCTION sfsync.capture_change('Lead')",
            other,
        )


def test_upgrading_takes_back_the_outbox_grant_editors_needed(warehouse_url, role, connect_as, tmp_path):
    """Before the capture ran as the sync, an editor needed INSERT on sfsync.outbox, and could queue any
    change for any object with it; the migration revokes every write grant on sfsync, reads stay."""
    for migration in migrations.migrations()[:9]:
        shutil.copy(migration.path, tmp_path)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn, tmp_path)
        editor = role()
        execute_naming(conn, "GRANT USAGE ON SCHEMA sfsync TO {role}", editor)
        execute_naming(conn, "GRANT SELECT, INSERT ON sfsync.outbox TO {role}", editor)
        execute_naming(conn, "GRANT UPDATE (pushed_at) ON sfsync.outbox TO {role}", editor)
        conn.execute("GRANT INSERT ON sfsync.sync_errors TO PUBLIC")
        as_editor = connect_as(editor)
        as_editor.execute(FORGED)
        assert migrations.migrate(conn) == [m.path.name for m in migrations.migrations()[9:]]
    for statement in [
        FORGED,
        "UPDATE sfsync.outbox SET pushed_at = now()",
        "INSERT INTO sfsync.sync_errors (sobject, row_id, operation, status_code, message, transient,"
        " change_id) VALUES ('Lead', 1, 'update', 'X', 'x', false, 1)",
    ]:
        with pytest.raises(Refused, match="permission denied"):
            as_editor.execute(statement)
    assert as_editor.execute("SELECT count(*) FROM sfsync.outbox").fetchone() == (1,)


def test_triggers_without_the_syncs_role_are_attached_again(conn):
    """Triggers from before the role check (the setting alone), or naming another role (credentials
    rotated), are replaced at the table's next run."""
    old = "WHEN (current_setting('sfsync.origin', true) IS DISTINCT FROM 'salesforce')"
    other = old[:-1] + " OR current_user <> 'retired_sync')"
    for trigger, table, function, when in [
        ("sfsync_capture", "lead", "capture_change('Lead', 'no-deletes')", old),
        ("sfsync_refuse", "account", "refuse_write('Account')", other),
    ]:
        conn.execute(
            f"CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON salesforce.{table}"
            f" FOR EACH ROW {when} EXECUTE FUNCTION sfsync.{function}"
        )
    assert prepare(conn) == [
        "lead: trigger sfsync_capture(Lead, no-deletes)",
        "account: trigger sfsync_refuse(Account)",
    ]


def test_a_sync_role_that_is_no_superuser_runs_the_sync_and_only_it_writes_as_the_sync(
    warehouse_url, role, connect_as
):
    """As in production: the sync's own role, with CREATE on the database only, migrates and owns it all;
    even a superuser that sets sfsync.origin is not the sync."""
    sync, editor = role(), role()
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        database = admin.execute("SELECT current_database()").fetchone()[0]
        admin.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(sync)
            )
        )
        as_sync = connect_as(sync)
        migrations.migrate(as_sync)
        as_sync.execute("INSERT INTO sfsync.access (grantee, access) VALUES (%s, 'edit')", [editor])
        assert f"lead: granted SELECT, INSERT, UPDATE, DELETE to {editor}" in prepare(as_sync)
        names = [c.name for c in COLUMNS]
        for table, row in [
            ("lead", ("00Q1", False, "2025-03-01T12:00:00Z", "a@x.com")),
            ("account", ("0011",)),
        ]:
            load.create_staging(as_sync, table, "stage__t", names[: len(row)])
            load.copy_rows(as_sync, "stage__t", names[: len(row)], [row])
            with as_sync.transaction():
                load.merge_staged(as_sync, table, "stage__t", names[: len(row)])
        connect_as(editor).execute("UPDATE salesforce.lead SET email = 'editor@x.com'")
        as_sync.execute("UPDATE salesforce.lead SET email = 'by-hand@x.com'")  # the sync's role, by hand
        assert [row[3]["email"]["new"] for row in outbox(as_sync)] == ["editor@x.com", "by-hand@x.com"]
        admin.execute("SET sfsync.origin = 'salesforce'")
        with pytest.raises(Refused, match="salesforce.account is synced from Salesforce only"):
            admin.execute("DELETE FROM salesforce.account")
        admin.execute("UPDATE salesforce.lead SET email = 'admin@x.com'")
        assert outbox(as_sync)[-1][3] == {"email": {"old": "by-hand@x.com", "new": "admin@x.com"}}
