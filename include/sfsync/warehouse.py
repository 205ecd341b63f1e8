"""The warehouse: connections and the versioned schema migrations under ``sql/migrations`` beside it.

The sync applies pending migrations itself on first use (``prepare_warehouse``), never a person by hand.
Migrations run in one transaction under an advisory lock, so DAG runs that start together apply each
migration exactly once, and a failed migration leaves the schema as it was.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

from sfsync import transforms
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.transforms import Column, widen

if TYPE_CHECKING:
    from sfsync.registry import SyncObject

log = logging.getLogger(__name__)
#: Fields the merge itself relies on; an object without them cannot be synced incrementally.
REQUIRED_COLUMNS = ("id", "systemmodstamp")

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


def connect(conn_id: str) -> psycopg.Connection:
    """A psycopg 3 connection to the warehouse named by the Airflow connection ``conn_id``."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = cast(
        psycopg.Connection, PostgresHook(postgres_conn_id=conn_id).get_conn()
    )  # psycopg 3 with SQLA 2
    conn.autocommit = True  # transactions are explicit (conn.transaction()), never implicit
    return conn


SQL_DIR = MIGRATIONS_DIR.parent
# Bookkeeping columns; Salesforce field names never start with an underscore, so these cannot clash.
SYNCED_AT, DELETED_AT, ROW_ID = "_sfsync_synced_at", "_sfsync_deleted_at", "_sfsync_row_id"
# Stamps the rows the sync COPYs straight into a table (copy_new), not those other writers insert.
SYNCED_NOW = "CASE WHEN current_setting('sfsync.origin', true) = 'salesforce' THEN now() END"
# Deleted records COPYed straight into a table, until copy_new stamps them in the same transaction: a
# partial index on this finds them without scanning the table, and holds no row otherwise.
UNDATED_DELETES = "isdeleted AND _sfsync_deleted_at IS NULL"
_PG_TYPE_NAMES = {"timestamp with time zone": "timestamptz", "time without time zone": "time"}


def statement(name: str) -> sql.SQL:
    """A statement from ``sql/`` beside this module (``"merge/upsert"``), read once."""
    return sql.SQL(_read_sql(name))  # our own files, not user input


@cache
def _read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def table_columns(conn: psycopg.Connection, table: str, schema: str = OBJECT_SCHEMA) -> dict[str, str]:
    """The columns of ``schema.table`` and their types (empty when the table does not exist)."""
    found = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        [schema, table],
    ).fetchall()
    return {name: _PG_TYPE_NAMES.get(kind, kind) for name, kind in cast(list[tuple[str, str]], found)}


def ensure_table(
    conn: psycopg.Connection,
    table: str,
    columns: list[Column],
    bidirectional: bool,
    sobject: str | None = None,
    allow_delete: bool = False,
) -> list[str]:
    """Create ``salesforce.<table>``, or add new columns and widen changed ones; return what changed.

    Columns are never dropped: a field that disappears or becomes invisible keeps its data and stops
    updating. Bidirectional tables take rows written in the warehouse before Salesforce gives them an Id,
    so their ``id`` is unique but nullable, under a surrogate key. Their writes by anyone but the sync are
    captured for write-back; the other tables refuse them (see ``migrations/0005_write_capture.sql`` and
    ``0010_write_roles.sql``). The roles in ``sfsync.access`` get their privileges on the table.
    """
    target = sql.Identifier(OBJECT_SCHEMA, table)
    bookkeeping = {SYNCED_AT: "timestamptz", DELETED_AT: "timestamptz"}
    if "isdeleted" not in {c.name for c in columns}:  # User has none; reconciliation still flags removals
        bookkeeping["isdeleted"] = "boolean NOT NULL DEFAULT false"
    changes = []
    with conn.transaction():
        # Serialises schema changes of one table across DAG runs (the incremental sync and the full load).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"sfsync.table.{table}"])
        existing = table_columns(conn, table)
        if not existing:
            key = (
                sql.SQL("{} bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text UNIQUE").format(
                    sql.Identifier(ROW_ID)
                )
                if bidirectional
                else sql.SQL("id text PRIMARY KEY")
            )
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target, key))
            changes.append(f"created {OBJECT_SCHEMA}.{table}")
            existing = table_columns(conn, table)
        synced = {c.name: c.pg_type for c in columns}
        for name, kind in (synced | bookkeeping).items():
            current = existing.get(name)
            if current is None:
                change, statement = f"added {name} {kind}", "ALTER TABLE {} ADD COLUMN {} {}"
            elif name in synced and (kind := widen(current, kind)) != current:
                change, statement = (
                    f"widened {name} from {current} to {kind}",
                    "ALTER TABLE {} ALTER {} TYPE {}",
                )
            else:
                continue
            # Types come from transforms.pg_type and widen, never from input; USING casts for a widening.
            ddl = sql.SQL(statement).format(target, sql.Identifier(name), sql.SQL(kind))
            if current is not None:
                ddl += sql.SQL(" USING {}::{}").format(sql.Identifier(name), sql.SQL(kind))
            conn.execute(ddl)
            changes.append(change)
        # The sync's COPY straight into the table (copy_new) relies on these two; no other writer sees them.
        index = f"{table}_sfsync_undated_deletes"[:63]
        has_default, has_index = conn.execute(
            "SELECT atthasdef, to_regclass(%s) IS NOT NULL FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = %s",
            [f'{OBJECT_SCHEMA}."{index}"', f'{OBJECT_SCHEMA}."{table}"', SYNCED_AT],
        ).fetchone()  # type: ignore[misc]
        if not has_default:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER {} SET DEFAULT " + SYNCED_NOW).format(
                    target, sql.Identifier(SYNCED_AT)
                )
            )
            changes.append(f"{SYNCED_AT} stamped by default on the sync's own inserts")
        if not has_index:  # checked first: CREATE INDEX IF NOT EXISTS would wait for every writer
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} (id) WHERE " + UNDATED_DELETES).format(
                    sql.Identifier(index), target
                )
            )
            changes.append(f"index {index}")
        changes += _guard_writes(conn, table, sobject or table, bidirectional, allow_delete, columns)
        changes += _grant_access(conn, table, bidirectional)
    return changes


# sfsync.origin is a session setting anyone may SET, so the sync's own writes are those made with it by the
# sync's role. The role is a literal baked into each trigger: a constant in WHEN costs nothing per row of a
# bulk COPY, a catalog lookup would.
NOT_THE_SYNC = "current_setting('sfsync.origin', true) IS DISTINCT FROM 'salesforce' OR current_user <> {}"


def _guard_writes(
    conn: psycopg.Connection,
    table: str,
    sobject: str,
    bidirectional: bool,
    allow_delete: bool,
    columns: list[Column],
) -> list[str]:
    """(Re)attach the capture or refusal triggers when they are missing or their settings changed.

    The sync's role is the role of the connection that runs this, the sync's own (see ``as_the_sync``).
    """
    if bidirectional:
        # The WHEN clauses spare the sync's own (bulk) writes even the trigger call. Row triggers are AFTER
        # ones: a BEFORE row trigger, even one that never fires, makes COPY insert row by row.
        createable = ",".join(c.name for c in columns if c.createable)
        updateable = ",".join(c.name for c in columns if c.updateable)
        deletes = "deletes" if allow_delete else "no-deletes"
        wanted = {
            "sfsync_capture": (
                "AFTER INSERT OR UPDATE OR DELETE", "ROW", "capture_change", [sobject, deletes]
            ),
            "sfsync_writable": (
                "AFTER INSERT OR UPDATE", "ROW", "refuse_unwritable", [sobject, createable, updateable]
            ),
            # TRUNCATE fires no row trigger: it would skip the capture.
            "sfsync_refuse_truncate": ("BEFORE TRUNCATE", "STATEMENT", "refuse_truncate", [sobject]),
        }  # fmt: skip
    else:
        wanted = {
            "sfsync_refuse": ("AFTER INSERT OR UPDATE OR DELETE", "ROW", "refuse_write", [sobject]),
            "sfsync_refuse_truncate": ("BEFORE TRUNCATE", "STATEMENT", "refuse_write", [sobject]),
        }
    target = f'{OBJECT_SCHEMA}."{table}"'
    # A trigger is current when it names the sync's role: a new role (credentials rotated) re-attaches it.
    present = {
        name: (function, args, before, of_the_sync)
        for name, function, args, before, of_the_sync in conn.execute(
            "SELECT t.tgname, p.proname, encode(t.tgargs, 'escape'), t.tgtype & 2 = 2,"
            " position(quote_literal(current_user) || '::name' IN pg_get_triggerdef(t.oid)) > 0"
            " FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal AND t.tgname LIKE 'sfsync\\_%%'",
            [target],
        ).fetchall()
    }
    role = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    changed = []
    for name in present.keys() - wanted.keys():  # the table's direction changed
        conn.execute(
            sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(name), sql.Identifier(OBJECT_SCHEMA, table)
            )
        )
        changed.append(f"dropped trigger {name}")
    for name, (timing, level, function, args) in wanted.items():
        expected = (function, "".join(f"{a}\\000" for a in args), timing.startswith("BEFORE"), True)
        if present.get(name) == expected:
            continue
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} {} ON {} FOR EACH {} WHEN (" + NOT_THE_SYNC + ")"
                " EXECUTE FUNCTION {}({})"
            ).format(
                sql.Identifier(name),
                sql.SQL(timing),  # literals of this function
                sql.Identifier(OBJECT_SCHEMA, table),
                sql.SQL(level),
                sql.Literal(role),
                sql.Identifier("sfsync", function),
                sql.SQL(", ").join(map(sql.Literal, args)),
            )
        )
        shown = ", ".join(a if len(a) <= 40 else f"{a[:37]}..." for a in args)  # column lists are long
        changed.append(f"trigger {name}({shown})")
    return changed


def _grant_access(conn: psycopg.Connection, table: str, bidirectional: bool) -> list[str]:
    """Grant the roles listed in ``sfsync.access`` what they lack on ``salesforce.<table>``: SELECT, and to
    editors INSERT, UPDATE and DELETE where the table is bidirectional (deletes the registry does not allow
    are refused by the capture trigger, with a clearer message than a missing privilege's)."""
    missing = conn.execute(
        """SELECT a.grantee, NOT has_schema_privilege(r.oid, %(schema)s, 'USAGE'),
                  array_agg(p.privilege ORDER BY p.n)
                      FILTER (WHERE NOT has_table_privilege(r.oid, %(table)s::regclass, p.privilege))
           FROM sfsync.access a JOIN pg_roles r ON r.rolname = a.grantee,
                unnest(CASE WHEN a.access = 'edit' AND %(edit)s
                            THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] ELSE ARRAY['SELECT'] END)
                    WITH ORDINALITY AS p(privilege, n)
           GROUP BY a.grantee, r.oid ORDER BY a.grantee""",
        {"schema": OBJECT_SCHEMA, "table": f'{OBJECT_SCHEMA}."{table}"', "edit": bidirectional},
    ).fetchall()
    changed = []
    for grantee, usage, privileges in missing:
        if usage:
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(OBJECT_SCHEMA), sql.Identifier(grantee)
                )
            )
            changed.append(f"granted USAGE on schema {OBJECT_SCHEMA} to {grantee}")
        if privileges:
            # Privilege names come from the statement above, never from input.
            conn.execute(
                sql.SQL("GRANT {} ON {} TO {}").format(
                    sql.SQL(", ".join(privileges)),
                    sql.Identifier(OBJECT_SCHEMA, table),
                    sql.Identifier(grantee),
                )
            )
            changed.append(f"granted {', '.join(privileges)} to {grantee}")
    return changed


def prepare_object_table(
    conn: psycopg.Connection, entry: SyncObject, describe: dict[str, Any]
) -> tuple[list[Column], list[str]]:
    """The columns of an object describe that the registry entry syncs, with the object's table (and its
    write guards) brought in line with them; and warnings about the entry's field names, also logged.

    The entry's field names are checked against the describe first (``transforms.check_fields``): one the
    object never had fails the step before the table changes."""
    warnings = transforms.check_fields(entry, describe, table_columns(conn, entry.table))
    for warning in warnings:
        log.warning("%s", warning)
    include = None if entry.fields == "all" else entry.fields
    columns = transforms.columns(describe, include, entry.exclude)
    if missing := [n for n in REQUIRED_COLUMNS if n not in {c.name for c in columns}]:
        raise RuntimeError(f"{entry.sobject}: the integration user cannot read {', '.join(missing)}")
    bidirectional = entry.direction == "bidirectional"
    for change in ensure_table(conn, entry.table, columns, bidirectional, entry.sobject, entry.allow_delete):
        log.info("%s: %s", entry.sobject, change)
    return columns, warnings


def as_the_sync(conn: psycopg.Connection) -> None:
    """Mark the rest of the caller's transaction as the sync's own writes: the write guards (capture for
    write-back, refusal of other writers) skip them, so nothing echoes back to Salesforce. Only on the
    sync's own connection: the guards skip a write only when the role that attached them makes it too."""
    conn.execute("SELECT set_config('sfsync.origin', 'salesforce', true)")


def staging_table(table: str, run_id: str) -> str:
    """The per-run staging table of ``table`` (in schema sfsync), the same on every retry of the run."""
    return f"stage__{table}__{hashlib.sha1(run_id.encode()).hexdigest()[:10]}"


def create_staging(conn: psycopg.Connection, table: str, staging: str, names: list[str]) -> None:
    """An empty, unlogged copy of the target's ``names`` columns (replacing a failed attempt's)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("sfsync", staging)))
    conn.execute(
        sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier("sfsync", staging), _names(names), sql.Identifier(OBJECT_SCHEMA, table)
        )
    )


def copy_rows(conn: psycopg.Connection, staging: str, names: list[str], rows: Iterable[tuple]) -> int:
    """COPY ``rows`` into the staging table; return how many."""
    count = 0
    with (
        conn.cursor() as cursor,
        cursor.copy(_copy(sql.Identifier("sfsync", staging), names, sql.SQL(""))) as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_csv(
    conn: psycopg.Connection, staging: str, names: list[str], pages: Iterable[Iterable[bytes]]
) -> int:
    """COPY CSV pages, each a stream of chunks with its header row first (as the Bulk API returns them),
    into the staging table; return the row count."""
    return _copy_csv(conn, sql.Identifier("sfsync", staging), names, pages)


def copy_new(
    conn: psycopg.Connection,
    table: str,
    names: list[str],
    pages: Iterable[Iterable[bytes]],
    exclusive: bool = False,
) -> dict[str, int]:
    """COPY CSV pages (as ``copy_csv``) straight into an object table none of whose Ids they hold, in the
    caller's transaction; return the counters ``merge_staged`` would.

    The rows end up as the merge's plain inserts would leave them, without staging them first:
    ``_sfsync_synced_at`` from its default, ``_sfsync_deleted_at`` of the deleted ones set afterwards. A
    record whose Id the table holds fails the COPY (unique id), and the caller's transaction with it.
    ``exclusive``: the caller may lock the table to the end of its transaction, so an empty table's key on
    ``id`` is built once over the copied rows (see ``_drop_empty_id_key``).
    """
    target = sql.Identifier(OBJECT_SCHEMA, table)
    as_the_sync(conn)
    restore = _drop_empty_id_key(conn, table) if exclusive else None
    rows = _copy_csv(conn, target, names, pages)
    if restore is not None:  # before the stamps: an inbound-only table's key is its replica identity
        conn.execute(restore)  # a duplicate Id fails it as it would have failed the COPY
    stamp = sql.SQL("UPDATE {} SET {} = now() WHERE " + UNDATED_DELETES).format(
        target, sql.Identifier(DELETED_AT)
    )
    deleted = conn.execute(stamp).rowcount if "isdeleted" in names else 0
    return {"new": rows - deleted, "updated": 0, "deleted": deleted, "skipped": 0}


def _drop_empty_id_key(conn: psycopg.Connection, table: str) -> sql.Composed | None:
    """Drop an empty table's unique key on ``id``; return the statement that adds it back.

    Built once after a large COPY, the index costs a fraction of inserting that many random Ids into it
    one by one (Postgres's advice for populating a database). Dropping it holds the table's ACCESS
    EXCLUSIVE lock, readers' too, until the caller's transaction ends. None, and nothing dropped, where the
    table has rows, another table's foreign key refers to the key, or its index is one a user chose as the
    table's replica identity or CLUSTER order (which the rebuilt one would not be).
    """
    target = sql.Identifier(OBJECT_SCHEMA, table)
    found = conn.execute(
        sql.SQL(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum]"
            " WHERE c.conrelid = {table}::regclass AND a.attname = 'id' AND c.contype IN ('p', 'u')"
            " AND NOT EXISTS (SELECT FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)"
            " AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = c.conindid"
            " AND (i.indisreplident OR i.indisclustered))"
            " AND NOT EXISTS (SELECT FROM {target})"
        ).format(table=sql.Literal(f'{OBJECT_SCHEMA}."{table}"'), target=target)
    ).fetchone()
    if found is None:
        return None
    name, definition = found
    constraint = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target, constraint))
    # The definition is the catalog's own text of the key (UNIQUE (id) or PRIMARY KEY (id)).
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(target, constraint, sql.SQL(definition))


def _copy_csv(
    conn: psycopg.Connection, target: sql.Identifier, names: list[str], pages: Iterable[Iterable[bytes]]
) -> int:
    # Salesforce has no empty strings, and its CSV quotes empty values: FORCE_NULL reads them as NULL.
    options = sql.SQL("WITH (FORMAT csv, HEADER true, FORCE_NULL ({}))").format(_names(names))
    count = 0
    for page in pages:
        with conn.cursor() as cursor:
            with cursor.copy(_copy(target, names, options)) as copy:
                for chunk in page:
                    copy.write(chunk)
            count += cursor.rowcount
    return count


def holds_ids(conn: psycopg.Connection, table: str) -> bool:
    """Whether any row of an object table has a Salesforce Id (rows written in the warehouse may not)."""
    found = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE id IS NOT NULL)").format(
            sql.Identifier(OBJECT_SCHEMA, table)
        )
    )
    return bool(found.fetchone()[0])  # type: ignore[index]


def merge_staged(conn: psycopg.Connection, table: str, staging: str, names: list[str]) -> dict[str, int]:
    """Merge a staging table into its object table (see ``merge/upsert.sql``); return the counters."""
    target, staged = sql.Identifier(OBJECT_SCHEMA, table), sql.Identifier("sfsync", staging)
    query = statement("merge/upsert").format(
        columns=_names(names),
        staging=staged,
        target=target,
        deleted=sql.SQL("isdeleted" if "isdeleted" in names else "false"),
        on_conflict=_on_conflict(names) if holds_staged_ids(conn, target, staged) else sql.SQL(""),
    )
    as_the_sync(conn)
    incoming, new, updated, deleted = conn.execute(query).fetchone()  # type: ignore[misc]
    return {"new": new, "updated": updated, "deleted": deleted, "skipped": incoming - new - updated - deleted}


def holds_staged_ids(conn: psycopg.Connection, target: sql.Identifier, staged: sql.Identifier) -> bool:
    """Whether any staged Id is in the target already. When none is, the merge inserts without ON CONFLICT;
    a writer that stores one of them after this check fails that insert (unique id), and the merge's retry
    takes the general path."""
    found = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} s JOIN {} t USING (id))").format(staged, target)
    )
    return bool(found.fetchone()[0])  # type: ignore[index]


def _on_conflict(names: list[str]) -> sql.Composed:
    # An object without IsDeleted (User) has the column all the same, set by reconciliation when a record
    # leaves; a record Salesforce returns is live, so the merge sets it back (excluded has its default).
    compared = names if "isdeleted" in names else [*names, "isdeleted"]
    return statement("merge/on_conflict").format(
        updates=sql.SQL(", ").join(
            sql.SQL("{} = excluded.{}").format(sql.Identifier(n), sql.Identifier(n))
            for n in compared
            if n != "id"
        ),
        stored=sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier("t", n) for n in compared)),
        incoming=sql.SQL("ROW({})").format(
            sql.SQL(", ").join(sql.Identifier("excluded", n) for n in compared)
        ),
    )


def drop_staging(conn: psycopg.Connection, staging: str) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("sfsync", staging)))


def _names(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _copy(target: sql.Identifier, names: list[str], options: sql.Composable) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN {}").format(target, _names(names), options)
