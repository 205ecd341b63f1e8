"""Record writes: inserts and updates from API-shaped values, checked and stamped as Salesforce does
(field access, types, validation), and the LastActivityDate roll-up that activity writes cause."""

from __future__ import annotations

from typing import Any

from .database import Database, Txn, User, quote
from .errors import RecordError, RecordValidationError, SalesforceError
from .ids import make_id
from .schema import SField, SObject, ValueError_
from .sharing import Sharing
from .validation import Validator


class Writes:
    """Writes records through the org's checks."""

    def __init__(self, db: Database, sharing: Sharing, validator: Validator) -> None:
        self.db = db
        self.schema = db.schema
        self.sharing = sharing
        self.validator = validator

    def check_fields(self, user: User, obj: SObject, body: dict[str, Any]) -> dict[str, SField]:
        """Map body keys to fields; an unknown or hidden field fails the whole request, as in Salesforce."""
        fields: dict[str, SField] = {}
        for key in body:
            if key == "attributes":
                continue
            f = obj.field(key)
            if f is None or not self.schema.field_visible(f, user.profile):
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", []
                )
            fields[key] = f
        return fields

    def save(self, txn: Txn, obj: SObject, body: dict[str, Any], record_id: str | None = None) -> str:
        """Insert (no ``record_id``) or update a record from a JSON body; returns its Id.

        Raises RecordValidationError with Salesforce's status codes, SalesforceError for request errors.
        """
        insert = record_id is None
        self.db.before_write()
        fields = self.check_fields(txn.user, obj, body)
        if insert and any(f.type == "id" for f in fields.values()):
            raise RecordValidationError(
                [RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])]
            )
        denied = [f.name for f in fields.values() if not (f.createable if insert else f.updateable)]
        if denied:
            raise RecordValidationError(
                [
                    RecordError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {', '.join(denied)}. Please check the security "
                        "settings of this field and verify that it is read/write for your profile or "
                        "permission set.",
                        denied,
                    )
                ]
            )
        values = {}
        for key, f in fields.items():
            try:
                values[f.name] = f.encode(body[key])
            except ValueError_:
                raise RecordValidationError(
                    [
                        RecordError(
                            "JSON_PARSER_ERROR",
                            f"Cannot deserialize instance of {f.type} from VALUE_STRING value {body[key]} "
                            "or request may be missing a required field",
                            [f.name],
                        )
                    ]
                ) from None
        if insert:
            if not obj.definition.createable:
                raise SalesforceError(
                    400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object"
                )
            old = None
            merged = self._defaults(obj, txn.user) | values
        else:
            assert record_id is not None
            old = self.writable_row(txn, obj, record_id)
            merged = old | values
        self.validator.validate(txn, obj, merged, values, record_id)
        if insert:
            return self._insert(txn, obj, merged)
        changed = {k: v for k, v in values.items() if old is None or old.get(k) != v}
        self.update(txn, obj, record_id or "", changed, system=False)
        if obj.definition.activity:
            self.roll_up_activity(txn, obj, [old or {}, merged])
        return record_id or ""

    def upsert(
        self, txn: Txn, obj: SObject, f: SField, value: str, record: dict[str, Any]
    ) -> tuple[str, bool]:
        """Create or update the record whose external id field ``f`` is ``value``: (Id, created)."""
        key = f.encode(value)
        vis, params = self.sharing.visibility(txn.user, obj, "t")
        sql = (
            f'SELECT t."Id" FROM {quote(obj.name)} t WHERE t.{quote(f.name)} = ? AND +t."IsDeleted" = 0 '
            f"AND {vis} LIMIT 2"
        )
        matches = [r[0] for r in txn.conn.execute(sql, (key, *params))]
        if len(matches) > 1:
            raise SalesforceError(
                300, "MULTIPLE_CHOICES", f"More than one record found for {f.name}: {value}"
            )
        body = {k: v for k, v in record.items() if k.lower() != f.name.lower()}
        if matches:
            return self.save(txn, obj, body, matches[0]), False
        return self.save(txn, obj, {**body, f.name: value}), True

    def writable_row(self, txn: Txn, obj: SObject, record_id: str) -> dict[str, Any]:
        """The stored values of a live record the user may change; Salesforce's errors where it may not."""
        if not obj.definition.updateable:
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object"
            )
        old = self.db.stored_row(txn.conn, obj, record_id)
        if old is None or not record_id.startswith(obj.key_prefix):
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        if not self.sharing.is_visible(txn.conn, txn.user, obj, record_id):
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
            )
        if old["IsDeleted"]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        if old.get("IsConverted"):
            raise SalesforceError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        return old

    def _defaults(self, obj: SObject, user: User) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            f.name: f.encode(f.default) for f in obj.stored_fields() if f.default is not None and not f.system
        }
        if obj.owned:
            defaults["OwnerId"] = user.id
        return defaults

    def _insert(self, txn: Txn, obj: SObject, values: dict[str, Any]) -> str:
        table = quote(obj.name)
        seq = txn.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) + 1 FROM {table}").fetchone()[0]
        record_id = make_id(obj.key_prefix, seq)
        row = {
            **values,
            "Id": record_id,
            "IsDeleted": 0,
            "CreatedDate": txn.ts,
            "CreatedById": txn.user.id,
            "LastModifiedDate": txn.ts,
            "LastModifiedById": txn.user.id,
            "SystemModstamp": txn.ts,
        }
        names = ", ".join(quote(k) for k in row)
        txn.conn.execute(
            f"INSERT INTO {table} (rowid, {names}) VALUES (?{', ?' * len(row)})", (seq, *row.values())
        )
        self.db.changes.stage(txn, obj, record_id, "CREATE", row)
        if obj.definition.activity:
            self.roll_up_activity(txn, obj, [row])
        return record_id

    def update(self, txn: Txn, obj: SObject, record_id: str, values: dict[str, Any], system: bool) -> None:
        """Write ``values``; a user change moves LastModifiedDate, a system change only SystemModstamp."""
        row = dict(values)
        if not system:
            row.update({"LastModifiedDate": txn.ts, "LastModifiedById": txn.user.id})
        row["SystemModstamp"] = txn.ts
        sets = ", ".join(f"{quote(k)} = ?" for k in row)
        txn.conn.execute(f'UPDATE {quote(obj.name)} SET {sets} WHERE "Id" = ?', (*row.values(), record_id))
        self.db.changes.stage_update(txn, obj, record_id, values, row, system)

    def roll_up_activity(self, txn: Txn, activity: SObject, rows: list[dict[str, Any]]) -> None:
        """Salesforce keeps LastActivityDate on an activity's Who/What records as a system change:
        SystemModstamp moves, LastModifiedDate does not."""
        targets: set[str] = {v for row in rows for ref in ("WhoId", "WhatId") if (v := row.get(ref))}
        for target_id in targets:
            parent = self.schema.by_prefix(target_id)
            if parent is None or parent.field("LastActivityDate") is None:
                continue
            latest = None
            for act in (o for o in self.schema.objects.values() if o.definition.activity):
                date_sql = act.field("ActivityDate").sql("a")  # type: ignore[union-attr]
                sql = (
                    f'SELECT MAX({date_sql}) FROM {quote(act.name)} a WHERE a."IsDeleted" = 0 '
                    'AND (a."WhoId" = ? OR a."WhatId" = ?)'
                )
                found = txn.conn.execute(sql, (target_id, target_id)).fetchone()[0]
                latest = max(filter(None, (latest, found)), default=None)
            current = txn.conn.execute(
                f'SELECT "LastActivityDate" FROM {quote(parent.name)} WHERE "Id" = ?', (target_id,)
            ).fetchone()
            if current is not None and current[0] != latest:
                self.update(txn, parent, target_id, {"LastActivityDate": latest}, system=True)
