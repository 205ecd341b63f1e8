"""Loading into object tables: per-run staging, COPY, and the merge (``sql/merge``).

``copy_or_merge`` takes Bulk results in by the fastest way that is safe, for the incremental sync and the
full load alike."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql

from sfsync import warehouse_key
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.warehouse import DELETED_AT, UNDATED_DELETES, as_the_sync, statement

if TYPE_CHECKING:
    from sfsync.registry import SyncObject

log = logging.getLogger(__name__)
T = TypeVar("T")
Pages = Iterable[Iterable[bytes]]


def copy_or_merge(
    conn: psycopg.Connection,
    entry: SyncObject,
    key_column: str,
    names: list[str],
    read: Callable[[], Pages],
    staging: str,
    finish: Callable[[dict[str, int]], T],
    straight: bool = True,
    exclusive: bool = False,
) -> T:
    """Take Bulk CSV pages into the object's table, and end with ``finish(counters)`` in the same transaction.

    ``straight``: COPY them straight into the table, as none of their records should be there (a first run,
    a full load's slice); a record that is there after all fails the COPY on the unique Id, and so does the
    fast way, leaving nothing. Otherwise, and also when rows inserted in the warehouse wait for their Ids
    (their records may be among these: only a merge matches them), the pages are staged and merged.
    ``read`` gives the pages, again for the second way (Bulk results are read again by locator).
    ``exclusive``: see ``copy_new``.
    """
    if straight and warehouse_key.waiting(conn, entry.table):
        log.info("%s: rows written in the warehouse await their Ids; staging and merging", entry.sobject)
    elif straight:
        try:
            with conn.transaction():
                return finish(copy_new(conn, entry.table, names, read(), exclusive))
        except psycopg.errors.UniqueViolation as error:
            log.info("%s: %s; staging and merging instead", entry.sobject, error.diag.message_detail)
    create_staging(conn, entry.table, staging, names)
    copy_csv(conn, staging, names, read())
    with conn.transaction():
        return finish(merge_into(conn, entry, key_column, staging, names))


def merge_into(
    conn: psycopg.Connection, entry: SyncObject, key_column: str, staging: str, names: list[str]
) -> dict[str, int]:
    """``merge_staged`` into the object's table, once the staged records a push created found their rows
    (``warehouse_key.adopt``)."""
    if entry.direction == "bidirectional" and key_column in names:
        warehouse_key.adopt(conn, entry.sobject, entry.table, staging, key_column)
    return merge_staged(conn, entry.table, staging, names)


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


def copy_csv(conn: psycopg.Connection, staging: str, names: list[str], pages: Pages) -> int:
    """COPY CSV pages, each a stream of chunks with its header row first (as the Bulk API returns them),
    into the staging table; return the row count."""
    return _copy_csv(conn, sql.Identifier("sfsync", staging), names, pages)


def copy_new(
    conn: psycopg.Connection,
    table: str,
    names: list[str],
    pages: Pages,
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


def _copy_csv(conn: psycopg.Connection, target: sql.Identifier, names: list[str], pages: Pages) -> int:
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
