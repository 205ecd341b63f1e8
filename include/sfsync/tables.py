"""Object tables: each ``salesforce.<object>`` created and widened from the describe, with its write
guards (capture for write-back, refusal of other writers) and its grants."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

from sfsync import columns
from sfsync.columns import Column, widen
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.warehouse import DELETED_AT, ROW_ID, SYNCED_AT, SYNCED_NOW, UNDATED_DELETES

if TYPE_CHECKING:
    from sfsync.registry import SyncObject

log = logging.getLogger(__name__)
#: Fields the merge itself relies on; an object without them cannot be synced incrementally.
REQUIRED_COLUMNS = ("id", "systemmodstamp")
_PG_TYPE_NAMES = {"timestamp with time zone": "timestamptz", "time without time zone": "time"}


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
    synced = {c.name: c.pg_type for c in columns}
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
            # Every column in the one statement: with one ALTER TABLE ADD COLUMN a column, creating a
            # table of 30 columns took twice as long (about 6 ms more).
            new = {name: kind for name, kind in (synced | bookkeeping).items() if name != "id"}
            conn.execute(
                sql.SQL("CREATE TABLE {} ({}, {})").format(
                    target,
                    key,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in new.items()
                    ),
                )
            )
            changes += [f"created {OBJECT_SCHEMA}.{table}", *(f"added {n} {k}" for n, k in new.items())]
            existing = table_columns(conn, table)
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
            # Types come from columns.pg_type and widen, never from input; USING casts for a widening.
            ddl = sql.SQL(statement).format(target, sql.Identifier(name), sql.SQL(kind))
            if current is not None:
                ddl += sql.SQL(" USING {}::{}").format(sql.Identifier(name), sql.SQL(kind))
            conn.execute(ddl)
            changes.append(change)
        changes += _copy_support(conn, table)
        changes += _guard_writes(conn, table, sobject or table, bidirectional, allow_delete, columns)
        changes += _grant_access(conn, table, bidirectional)
    return changes


def _copy_support(conn: psycopg.Connection, table: str) -> list[str]:
    """What the sync's COPY straight into the table (``load.copy_new``) relies on, and no other writer sees:
    ``_sfsync_synced_at`` stamped by default on the sync's own inserts, and the index of undated deletes."""
    target = sql.Identifier(OBJECT_SCHEMA, table)
    changes = []
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

    The entry's field names are checked against the describe first (``columns.check_fields``): one the
    object never had fails the step before the table changes."""
    warnings = columns.check_fields(entry, describe, table_columns(conn, entry.table))
    for warning in warnings:
        log.warning("%s", warning)
    include = None if entry.fields == "all" else entry.fields
    synced = columns.synced(describe, include, entry.exclude)
    if missing := [n for n in REQUIRED_COLUMNS if n not in {c.name for c in synced}]:
        raise RuntimeError(f"{entry.sobject}: the integration user cannot read {', '.join(missing)}")
    bidirectional = entry.direction == "bidirectional"
    for change in ensure_table(conn, entry.table, synced, bidirectional, entry.sobject, entry.allow_delete):
        log.info("%s: %s", entry.sobject, change)
    return synced, warnings
