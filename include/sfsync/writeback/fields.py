"""What a push knows of the fields it writes: each column's API name and Postgres type, the org's describe
of each object written to (asked once per push), and the warehouse key a new record carries."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sfsync import state, tables, warehouse_key

if TYPE_CHECKING:
    from sfsync.context import Context
    from sfsync.registry import SyncObject

#: Columns a push never writes: Salesforce sets them.
NOT_SENT = ("id", "isdeleted")


class Fields:
    """One push's knowledge of the fields of ``entry`` and of the objects its changes are redirected to."""

    def __init__(self, context: Context, entry: SyncObject) -> None:
        self.context, self.entry = context, entry
        self.types = tables.table_columns(context.conn, entry.table)  # column -> Postgres type
        self.key_column = context.settings.warehouse_key_column
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self._names: dict[str, dict[str, str]] = {}
        self._installation: uuid.UUID | None = None

    def described(self, sobject: str) -> dict[str, dict[str, Any]]:
        """An object's fields by lower-case name."""
        if sobject not in self._described:
            describe = self.context.sf.describe(sobject)
            self._described[sobject] = {f["name"].lower(): f for f in describe["fields"]}
        return self._described[sobject]

    def names(self, sobject: str) -> dict[str, str]:
        """API names by column. The object's own come from its last pull, which costs no call: only
        inserts (the warehouse key) and redirects to another object need a describe."""
        if sobject not in self._names:
            known = state.object_state(self.context.conn, sobject).fields
            if sobject == self.entry.sobject and known:
                self._names[sobject] = {name.lower(): name for name in known}
            else:
                self._names[sobject] = {column: f["name"] for column, f in self.described(sobject).items()}
        return self._names[sobject]

    def types_by_name(self, sobject: str) -> dict[str, str]:
        """Each field's Postgres type by its API name on ``sobject``."""
        names = self.names(sobject)
        return {names.get(column, column): kind for column, kind in self.types.items()}

    def warehouse_key(self) -> str | None:
        """The org's external Id field for warehouse rows, when the integration user can write it."""
        found = self.described(self.entry.sobject).get(self.key_column)
        return found["name"] if found and found.get("externalId") and found.get("createable") else None

    def row_key(self, row_id: int) -> str:
        if self._installation is None:
            self._installation = warehouse_key.installation(self.context.conn)
        return warehouse_key.row_key(self._installation, self.entry.table, row_id)
