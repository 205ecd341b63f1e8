"""The warehouse key: how a row inserted in the warehouse and the record Salesforce creates for it find
each other, whatever was lost in between.

A push sends each new row's key (a UUID derived from this warehouse and the row) in the org's external Id
field (``warehouse_id_field``) and upserts on it, so a retried insert finds the record the lost answer
had created. A pull that brings such a record before its Id reached the row matches the two by that key
(``adopt``), so the record never arrives as a second row beside the one it came from.
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

import psycopg
from psycopg import sql

from sfsync import warehouse
from sfsync.defaults import OBJECT_SCHEMA
from sfsync.warehouse import ROW_ID

log = logging.getLogger(__name__)


def installation(conn: psycopg.Connection) -> uuid.UUID:
    """This warehouse's identity (``sfsync.installation``): two warehouses never claim each other's rows."""
    row = conn.execute("SELECT id FROM sfsync.installation").fetchone()
    return cast(uuid.UUID, row[0])  # type: ignore[index]  # the migration inserts the one row


def row_key(installation_id: uuid.UUID, table: str, row_id: int) -> str:
    """The key a warehouse row's record carries in Salesforce."""
    return str(uuid.uuid5(installation_id, f"{table}:{row_id}"))


def adopt(conn: psycopg.Connection, sobject: str, table: str, staging: str, key_column: str) -> int:
    """Give the staged records that a push created (their ``key_column`` holds a row's key) to the rows they
    came from, which still wait for their Id, and settle the changes that push sent (they are in Salesforce);
    return how many. Only rows whose insert was sent are looked for: a key is never matched to a row whose
    record cannot exist. In the caller's transaction, before the merge: the merge then updates those rows
    instead of inserting the records again as twins."""
    target = sql.Identifier(OBJECT_SCHEMA, table)
    pending = [
        row_id
        for (row_id,) in conn.execute(
            sql.SQL(
                "SELECT t.{row_id} FROM {target} t WHERE t.id IS NULL AND EXISTS (SELECT FROM sfsync.outbox o"
                " WHERE o.sobject = %s AND o.row_id = t.{row_id} AND o.sent_at IS NOT NULL"
                " AND o.pushed_at IS NULL)"
            ).format(row_id=sql.Identifier(ROW_ID), target=target),
            [sobject],
        )
    ]
    if not pending:
        return 0
    me = installation(conn)
    keys = [row_key(me, table, row_id) for row_id in pending]
    found = conn.execute(
        sql.SQL(
            "SELECT k.row_id, s.id FROM {staging} s"
            " JOIN unnest(%s::text[], %s::bigint[]) AS k(key, row_id) ON s.{key} = k.key"
        ).format(staging=sql.Identifier("sfsync", staging), key=sql.Identifier(key_column)),
        [keys, pending],
    ).fetchall()
    unclaimed = set(claim(conn, sobject, table, [(row_id, sfid) for row_id, sfid in found]))
    adopted = [row_id for row_id, _ in found if row_id not in unclaimed]
    conn.execute(
        "UPDATE sfsync.outbox SET pushed_at = now() WHERE sobject = %s AND row_id = ANY(%s)"
        " AND sent_at IS NOT NULL AND pushed_at IS NULL",
        [sobject, adopted],
    )
    conn.execute("DELETE FROM sfsync.sync_errors WHERE sobject = %s AND row_id = ANY(%s)", [sobject, adopted])
    return len(adopted)


def claim(conn: psycopg.Connection, sobject: str, table: str, ids: list[tuple[int, str]]) -> list[int]:
    """Write each ``(row_id, Salesforce Id)`` to its row, as the sync; return the rows that could not take
    theirs. A row that an earlier pull brought in as a twin of a pending insert (before ``adopt`` existed)
    gives the Id up to the row it came from, unless changes made to the twin still wait for a push: then
    the pending row keeps waiting and is returned, so the caller records why."""
    if not ids:
        return []
    target, row_id = sql.Identifier(OBJECT_SCHEMA, table), sql.Identifier(ROW_ID)
    rows, sfids = [r for r, _ in ids], [s for _, s in ids]
    warehouse.as_the_sync(conn)
    # The twins are locked before the outbox is read: an edit of one committed meanwhile is seen, and one
    # made later waits, then finds its row gone (and captures nothing).
    twins = conn.execute(
        sql.SQL(
            "SELECT t.{row_id} FROM {target} t JOIN unnest(%s::bigint[], %s::text[]) AS d(row_id, id)"
            " ON t.id = d.id AND t.{row_id} <> d.row_id FOR UPDATE OF t"
        ).format(target=target, row_id=row_id),
        [rows, sfids],
    ).fetchall()
    if twins:
        idle = conn.execute(
            "SELECT array_agg(twin) FROM unnest(%s::bigint[]) AS twin WHERE NOT EXISTS (SELECT FROM"
            " sfsync.outbox o WHERE o.sobject = %s AND o.row_id = twin AND o.pushed_at IS NULL)",
            [[t for (t,) in twins], sobject],
        ).fetchone()
        try:
            with conn.transaction():  # a user's foreign key may refer to a twin: then it stays
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(target, row_id),
                    [(idle and idle[0]) or []],
                )
        except psycopg.errors.IntegrityError as error:
            log.warning("%s: a twin row stays: %s", table, error.diag.message_primary)
    held = conn.execute(
        sql.SQL(
            "SELECT d.row_id FROM unnest(%s::bigint[], %s::text[]) AS d(row_id, id)"
            " JOIN {target} t ON t.id = d.id AND t.{row_id} <> d.row_id"
        ).format(target=target, row_id=row_id),
        [rows, sfids],
    ).fetchall()
    refused = {r for (r,) in held}
    free = [(r, s) for r, s in ids if r not in refused]
    conn.execute(
        sql.SQL(
            "UPDATE {target} t SET id = d.id FROM unnest(%s::bigint[], %s::text[]) AS d(row_id, id)"
            " WHERE t.{row_id} = d.row_id AND t.id IS DISTINCT FROM d.id"
        ).format(target=target, row_id=row_id),
        [[r for r, _ in free], [s for _, s in free]],
    )
    return sorted(refused)


def waiting(conn: psycopg.Connection, table: str) -> bool:
    """Whether rows inserted in the warehouse wait for their Id: records COPYed straight into the table
    would miss them (``adopt`` needs staging), so the COPY's fast path is not for such a table."""
    found = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE id IS NULL)").format(
            sql.Identifier(OBJECT_SCHEMA, table)
        )
    ).fetchone()
    return bool(found and found[0])
