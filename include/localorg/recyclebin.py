"""The recycle bin: delete (cascading, clearing or refused by the records that refer to the deleted one),
undelete, hard delete and purge, and the deleted/ feed of what was deleted, as Salesforce keeps them."""

from __future__ import annotations

from typing import Any

from .database import Database, Txn, User, quote
from .errors import SalesforceError
from .schema import SField, SObject, now_ms
from .sharing import Sharing
from .writes import Writes

RECYCLE_BIN_DAYS = 15
_DAY_MS = 86_400_000


class RecycleBin:
    """Deletes records and keeps them restorable for ``RECYCLE_BIN_DAYS``."""

    def __init__(self, db: Database, sharing: Sharing, writes: Writes) -> None:
        self.db = db
        self.schema = db.schema
        self.sharing = sharing
        self.writes = writes

    def delete(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Move a record (and its cascade-deleted children) to the recycle bin."""
        self._check_deletable(obj)
        self.db.before_write()
        old = self.writes.writable_row(txn, obj, record_id)
        self.soft_delete(txn, obj, record_id, old)

    def _check_deletable(self, obj: SObject) -> None:
        if not obj.definition.deletable:
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object"
            )

    def soft_delete(
        self, txn: Txn, obj: SObject, record_id: str, old: dict[str, Any], parent: str | None = None
    ) -> None:
        """Move a record to the recycle bin (``parent``: the record whose deletion cascaded to it), unless a
        restricting reference refuses it; cascade to its children and clear the lookups to it."""
        for child, f in self._children(obj, "restrict"):
            self._refuse_delete(txn, obj, record_id, child, f)
        deleted = {"IsDeleted": 1, "_DeletedDate": txn.ts, "_CascadedFrom": parent}
        self.writes.update(txn, obj, record_id, deleted, system=False)
        if obj.definition.activity:
            self.writes.roll_up_activity(txn, obj, [old])
        for child, f in self._children(obj, "cascade"):
            for child_id in self._live_children(txn, child, f, record_id):
                child_row = self.db.stored_row(txn.conn, child, child_id) or {}
                self.soft_delete(txn, child, child_id, child_row, record_id)
        for child, f in self._children(obj, "clear"):
            for child_id in self._live_children(txn, child, f, record_id):
                # Clearing is a system change: SystemModstamp moves, LastModifiedDate does not.
                self.writes.update(txn, child, child_id, {f.name: None}, system=True)
                if f.undelete_restores:
                    txn.conn.execute(
                        "INSERT INTO _cleared VALUES (?, ?, ?, ?)", (record_id, child.name, child_id, f.name)
                    )

    def _children(self, obj: SObject, on_delete: str) -> list[tuple[SObject, SField]]:
        """(child object, reference field) pairs pointing at ``obj`` with this delete behaviour."""
        return [
            (child, f)
            for child in self.schema.objects.values()
            for f in child.fields.values()
            if f.type == "reference"
            and not f.system
            and f.on_delete == on_delete
            and obj.name in f.reference_to
        ]

    @staticmethod
    def _live_children(txn: Txn, child: SObject, f: SField, record_id: str) -> list[str]:
        sql = f'SELECT "Id" FROM {quote(child.name)} WHERE {quote(f.name)} = ? AND +"IsDeleted" = 0'
        return [row[0] for row in txn.conn.execute(sql, (record_id,))]

    def _refuse_delete(self, txn: Txn, obj: SObject, record_id: str, child: SObject, f: SField) -> None:
        """A restricting reference blocks the delete while a live record uses it, as in Salesforce."""
        names = [self._record_name(txn, child, i) for i in self._live_children(txn, child, f, record_id)]
        if names:
            raise SalesforceError(
                400,
                "DELETE_FAILED",
                f"Your attempt to delete {self._record_name(txn, obj, record_id)} could not be completed "
                f"because it is associated with the following {child.definition.label_plural.lower()}.: "
                f"{', '.join(names)}",
                [],
            )

    @staticmethod
    def _record_name(txn: Txn, obj: SObject, record_id: str) -> str:
        """A record's Name (computed for Contact and Lead), or its Id for objects without one."""
        name = obj.field("Name")
        if name is None:
            return record_id
        sql = f'SELECT {name.sql("t")} FROM {quote(obj.name)} t WHERE t."Id" = ?'
        return str(txn.conn.execute(sql, (record_id,)).fetchone()[0] or record_id)

    # -- recycle bin: undelete, hard delete, purge -------------------------------------------------

    def _binned_row(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Check that the record is in the recycle bin and that the user may see it."""
        row = txn.conn.execute(
            f'SELECT "IsDeleted" FROM {quote(obj.name)} WHERE "Id" = ?', (record_id,)
        ).fetchone()
        if row is None:
            raise SalesforceError(404, "INVALID_ID_FIELD", f"invalid record id: {record_id}", [])
        if not self.sharing.is_visible(txn.conn, txn.user, obj, record_id):
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
            )
        if not row[0]:
            raise SalesforceError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])

    def undelete(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Restore a record from the recycle bin, with the children its deletion cascaded to."""
        self.db.before_write()
        self._binned_row(txn, obj, record_id)
        self._restore(txn, obj, record_id)

    def _restore(self, txn: Txn, obj: SObject, record_id: str) -> None:
        restored = {"IsDeleted": 0, "_DeletedDate": None, "_CascadedFrom": None}
        self.writes.update(txn, obj, record_id, restored, system=False)
        if obj.definition.activity:
            self.writes.roll_up_activity(txn, obj, [self.db.stored_row(txn.conn, obj, record_id) or {}])
        cleared = "SELECT object, child, field FROM _cleared WHERE parent = ?"
        for child_name, child_id, name in txn.conn.execute(cleared, (record_id,)).fetchall():
            # Salesforce puts back custom lookups (and Account.ParentId, Contact.ReportsToId) the delete
            # cleared, unless the child has been given another value since.
            child = self.schema.objects[child_name.lower()]
            table, column = quote(child.name), quote(name)
            sql = f'SELECT 1 FROM {table} WHERE "Id" = ? AND {column} IS NULL AND "IsDeleted" = 0'
            if txn.conn.execute(sql, (child_id,)).fetchone():
                self.writes.update(txn, child, child_id, {name: record_id}, system=True)
        txn.conn.execute("DELETE FROM _cleared WHERE parent = ?", (record_id,))
        for child, f in self._children(obj, "cascade"):
            # Only children deleted together with the record come back, as in Salesforce.
            sql = (
                f'SELECT "Id" FROM {quote(child.name)} WHERE {quote(f.name)} = ? AND "IsDeleted" = 1 '
                'AND "_CascadedFrom" = ?'
            )
            for (child_id,) in txn.conn.execute(sql, (record_id, record_id)).fetchall():
                self._restore(txn, child, child_id)

    def hard_delete(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Bulk API hardDelete: delete without a stay in the recycle bin (cascading as delete does)."""
        self._check_deletable(obj)
        self.db.before_write()
        self.soft_delete(txn, obj, record_id, self.writes.writable_row(txn, obj, record_id))
        self._purge(txn, obj, record_id)

    def purge(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Empty one record (and what its deletion cascaded to) out of the recycle bin."""
        self._binned_row(txn, obj, record_id)
        self._purge(txn, obj, record_id)

    def purge_expired(self, now: int | None = None) -> int:
        """Salesforce's nightly clean-up: purge what spent 15 days in the recycle bin, and forget
        purged records as old as that (which moves the deleted/ feed's earliestDateAvailable)."""
        cutoff = (now or now_ms()) - RECYCLE_BIN_DAYS * _DAY_MS
        admin = next(u for u in self.db.users.values() if u.view_all)
        count = 0
        with self.db.write(admin) as txn:
            for obj in self.schema.objects.values():
                sql = f'SELECT "Id" FROM {quote(obj.name)} WHERE "IsDeleted" = 1 AND "_DeletedDate" < ?'
                for (record_id,) in txn.conn.execute(sql, (cutoff,)).fetchall():
                    if self.db.stored_row(txn.conn, obj, record_id) is not None:  # not purged with its parent
                        self._purge(txn, obj, record_id)
                        count += 1
            forgotten = txn.conn.execute(
                'SELECT MAX("DeletedDate") FROM _purged WHERE "DeletedDate" < ?', (cutoff,)
            ).fetchone()[0]
            if forgotten is not None:
                txn.conn.execute('DELETE FROM _purged WHERE "DeletedDate" <= ?', (forgotten,))
                txn.conn.execute(
                    "INSERT INTO _meta VALUES ('purged_through', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(forgotten),),
                )
        return count

    def _purge(self, txn: Txn, obj: SObject, record_id: str) -> None:
        txn.conn.execute("DELETE FROM _cleared WHERE parent = ?", (record_id,))
        for child, f in self._children(obj, "cascade"):
            sql = f'SELECT "Id" FROM {quote(child.name)} WHERE {quote(f.name)} = ? AND "IsDeleted" = 1'
            for (child_id,) in txn.conn.execute(sql, (record_id,)).fetchall():
                self._purge(txn, child, child_id)
        table = quote(obj.name)
        owner = '"OwnerId"' if obj.owned else "NULL"
        parent = quote(obj.definition.controlled_by) if obj.definition.controlled_by else "NULL"
        txn.conn.execute(
            f'INSERT OR REPLACE INTO _purged SELECT "Id", ?, "_DeletedDate", {owner}, {parent} '
            f'FROM {table} WHERE "Id" = ?',
            (obj.name, record_id),
        )
        txn.conn.execute(f'DELETE FROM {table} WHERE "Id" = ?', (record_id,))

    def deleted_records(self, user: User, obj: SObject, start: int, end: int) -> list[tuple[str, int]]:
        """(Id, deleted date) of records deleted in [start, end) that the user may see: those in the
        recycle bin and those purged since, which Salesforce keeps reporting until physically gone."""
        vis, params = self.sharing.visibility(user, obj, "t")
        parent = quote(obj.definition.controlled_by or "ParentId")
        sql = (
            f'SELECT t."Id", t."_DeletedDate" FROM {quote(obj.name)} t WHERE t."IsDeleted" = 1 '
            f'AND t."_DeletedDate" >= ? AND t."_DeletedDate" < ? AND {vis} '
            f'UNION ALL SELECT t."Id", t."_DeletedDate" FROM (SELECT "Id", "DeletedDate" AS "_DeletedDate", '
            f'"OwnerId", "ParentId" AS {parent} FROM _purged WHERE object = ?) t '
            f'WHERE t."_DeletedDate" >= ? AND t."_DeletedDate" < ? AND {vis} ORDER BY 2, 1'
        )
        rows = self.db.conn().execute(sql, (start, end, *params, obj.name, start, end, *params))
        return [(r[0], r[1]) for r in rows]

    def was_purged(self, record_id: str) -> bool:
        """Whether the record was purged (or hard-deleted) and the deleted/ feed still reports it."""
        return (
            self.db.conn().execute('SELECT 1 FROM _purged WHERE "Id" = ?', (record_id,)).fetchone()
            is not None
        )

    def earliest_deleted_available(self) -> int:
        """The deleted/ feed is complete from here on: the org's creation or the last forgotten purge."""
        row = self.db.conn().execute("SELECT value FROM _meta WHERE key = 'purged_through'").fetchone()
        return int(row[0]) if row else self.db.created_ms()
