"""Record validation, in Salesforce's order: required fields, field-level checks (length, restricted
picklists, email, number range, references, uniqueness), unique keys, then the object's validation rules."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from .database import Txn, quote
from .errors import RecordError, RecordValidationError, SalesforceError
from .formula import compile_formula
from .schema import NUMBER_TYPES, TEXT_TYPES, Schema, SField, SObject
from .sharing import Sharing

_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


class Validator:
    """Checks a record about to be written; its validation rules are compiled once."""

    def __init__(self, schema: Schema, sharing: Sharing) -> None:
        self.schema = schema
        self.sharing = sharing
        self._rules = {
            obj.name: [
                (r, compile_formula(r.condition, partial(_param_ref, obj)))
                for r in obj.definition.validation_rules
            ]
            for obj in self.schema.objects.values()
        }

    def validate(
        self, txn: Txn, obj: SObject, merged: dict[str, Any], changed: dict[str, Any], record_id: str | None
    ) -> None:
        """Salesforce's order: required fields, field-level checks, then custom validation rules."""
        insert = record_id is None
        candidates = obj.stored_fields() if insert else [obj.fields[k.lower()] for k in changed]
        missing = [f.name for f in candidates if f.required and not f.system and merged.get(f.name) is None]
        for group in obj.definition.require_one_of:
            if all(merged.get(name) is None for name in group) and (insert or set(group) & set(changed)):
                missing.extend(group)
        if missing:
            raise RecordValidationError(
                [
                    RecordError(
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{', '.join(missing)}]",
                        missing,
                    )
                ]
            )
        errors = [
            e
            for name, value in changed.items()
            if value is not None
            for e in [self._check_value(txn, obj.fields[name.lower()], value, record_id)]
            if e is not None
        ]
        if errors:
            raise RecordValidationError(errors)
        for key in obj.definition.unique_keys:
            keyed = [merged.get(name) for name in key.fields]
            if None in keyed or not (insert or set(key.fields) & set(changed)):
                continue
            where = " AND ".join(f"{quote(name)} = ?" for name in key.fields)
            sql = f'SELECT 1 FROM {quote(obj.name)} WHERE {where} AND +"IsDeleted" = 0 AND "Id" IS NOT ?'
            if txn.conn.execute(sql, (*keyed, record_id)).fetchone():
                raise RecordValidationError([RecordError("DUPLICATE_VALUE", key.message, [])])
        for rule, compiled in self._rules[obj.name]:
            params = {
                f"f_{name.lower()}": merged.get(obj.fields[name.lower()].name) for name in compiled.fields
            }
            if txn.conn.execute(f"SELECT COALESCE({compiled.sql}, 0)", params).fetchone()[0]:
                raise RecordValidationError(
                    [
                        RecordError(
                            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                            rule.message,
                            [rule.field] if rule.field else [],
                        )
                    ]
                )

    def _check_value(self, txn: Txn, f: SField, value: Any, record_id: str | None) -> RecordError | None:
        if f.type in TEXT_TYPES and f.type != "multipicklist" and len(value) > f.length:
            shown = value if len(value) <= 100 else value[:97] + "..."
            return RecordError(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {shown} (max length={f.length})",
                [f.name],
            )
        if f.type in ("picklist", "multipicklist") and f.restricted:
            allowed = {v.value for v in f.picklist if v.active}
            bad = [v for v in value.split(";")] if f.type == "multipicklist" else [value]
            bad = [v for v in bad if v not in allowed]
            if bad:
                return RecordError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {bad[0]}",
                    [f.name],
                )
        if f.type == "email" and not _EMAIL_RE.match(value):
            return RecordError(
                "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
            )
        if f.type in NUMBER_TYPES and abs(value) >= 10 ** (f.precision - f.scale):
            return RecordError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        if f.type == "reference":
            return self._check_reference(txn, f, value)
        if f.unique:
            sql = (
                f'SELECT "Id" FROM {quote(f.obj.name)} WHERE {quote(f.name)} = ? AND +"IsDeleted" = 0 '
                'AND "Id" IS NOT ?'
            )
            clash = txn.conn.execute(sql, (value, record_id)).fetchone()
            if clash:
                return RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {clash[0]}",
                    [f.name],
                )
        return None

    def _check_reference(self, txn: Txn, f: SField, value: str) -> RecordError | None:
        if len(value) != 18:  # encode() normalised every well-formed Id to 18 characters
            return RecordError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        target = self.schema.by_prefix(value)
        if target is None or target.name not in f.reference_to:
            return RecordError(
                "FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        row = txn.conn.execute(
            f'SELECT "IsDeleted" FROM {quote(target.name)} WHERE "Id" = ?', (value,)
        ).fetchone()
        if row is None:
            return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if row[0]:
            return RecordError("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        if not self.sharing.is_visible(txn.conn, txn.user, target, value):
            return RecordError(
                "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
                "insufficient access rights on cross-reference id",
                [f.name],
            )
        return None


def _param_ref(obj: SObject, name: str) -> tuple[str, str]:
    """Validation rules read the record being saved through named parameters."""
    f = obj.field(name)
    if f is None or not f.stored:
        raise SalesforceError(500, "INVALID_FORMULA", f"validation rules can only read stored fields: {name}")
    return f":f_{f.name.lower()}", f.kind
