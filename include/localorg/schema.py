"""The runtime schema: objects and fields (declared plus Salesforce's system fields), value codecs
between JSON and SQLite, and the describe payloads."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import formula
from .ids import normalize_id
from .orgdef import COMPOUND_TYPES, FieldDef, ObjectDef, OrgDef, PicklistValue, components

TEXT_TYPES = frozenset({"string", "textarea", "picklist", "multipicklist", "email", "phone", "url"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
    "location": "urn:location",
}
FORMULA_KIND = {
    "boolean": formula.BOOLEAN,
    "date": formula.DATE,
    "datetime": formula.DATETIME,
    **{t: formula.NUMBER for t in NUMBER_TYPES},
}
_DEFAULT_LENGTH = {
    "id": 18,
    "reference": 18,
    "picklist": 255,
    "multipicklist": 4099,
    "email": 80,
    "phone": 40,
    "url": 255,
    "string": 255,
    "textarea": 32000,
}
_UNGROUPABLE = frozenset({"textarea", "multipicklist", "double", "currency", "percent", *COMPOUND_TYPES})
# Long text areas (longer than 255) cannot be filtered or sorted in SOQL.
_FILTER_MAX_TEXTAREA = 255
_DATETIME_IN = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


class ValueError_(Exception):
    """A JSON value that cannot become a value of the field's type (Salesforce's JSON_PARSER_ERROR)."""


def format_datetime(ms: int) -> str:
    """Epoch milliseconds as Salesforce prints datetimes: ``2024-01-01T00:00:00.000+0000``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+0000"


def parse_datetime(text: str) -> int:
    """An ISO 8601 datetime (offset optional, UTC when absent) as epoch milliseconds."""
    match = _DATETIME_IN.match(text.strip())
    if match is None:
        raise ValueError_(text)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError_(text) from exc
    ms = int(moment.timestamp()) * 1000 + int((fraction or "0")[:3].ljust(3, "0"))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return ms


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class SField:
    """A field as the API sees it."""

    name: str
    type: str
    label: str
    obj: SObject = field(repr=False)
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    on_delete: str = "clear"
    undelete_restores: bool = False
    picklist: tuple[PicklistValue, ...] = ()
    restricted: bool = False
    default: Any = None
    formula: str | None = None
    derived: bool = False
    system: bool = False
    # An address or geolocation: its components, keyed as its JSON value names them.
    components: tuple[tuple[str, SField], ...] = field(default=(), repr=False)
    compound_name: str | None = None  # describe's compoundFieldName, on a component

    @property
    def cascade_delete(self) -> bool:
        return self.on_delete == "cascade"

    @property
    def stored(self) -> bool:
        """Formula and compound fields have no column: they are computed on read."""
        return self.formula is None and self.type not in COMPOUND_TYPES

    @property
    def nillable(self) -> bool:
        return not (self.required or self.type in ("boolean", "id")) or self.formula is not None

    @property
    def filterable(self) -> bool:
        return not (self.type == "textarea" and self.length > _FILTER_MAX_TEXTAREA)

    @property
    def sortable(self) -> bool:
        return self.filterable and self.type not in ("multipicklist", *COMPOUND_TYPES)

    @property
    def kind(self) -> str:
        """The formula-language kind of this field's values."""
        return FORMULA_KIND.get(self.type, formula.TEXT)

    def sql(self, alias: str) -> str:
        """The SQL expression of this field for a table alias (a formula expands to an expression)."""
        return self.obj.field_sql(self, alias)

    def encode(self, value: Any) -> Any:
        """A JSON request value as stored in SQLite; raises ValueError_ when the type is wrong."""
        if value is None:
            return 0 if self.type == "boolean" else None
        kind = self.type
        if kind in TEXT_TYPES:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError_(value)
            text = str(value)
            if kind == "multipicklist":
                text = ";".join(dict.fromkeys(v.strip() for v in text.split(";") if v.strip()))
            # Salesforce stores an empty string as null.
            return text or None
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError_(value)
            return int(value)
        if kind in NUMBER_TYPES:
            return self._encode_number(value)
        if kind == "date":
            if not isinstance(value, str):
                raise ValueError_(value)
            return format_date(parse_datetime(value))
        if kind == "datetime":
            if not isinstance(value, str):
                raise ValueError_(value)
            return parse_datetime(value)
        if kind in ("reference", "id"):
            if not isinstance(value, str):
                raise ValueError_(value)
            # Shape and target checks happen in validation, which knows the Salesforce error codes.
            return normalize_id(value) or value or None
        raise AssertionError(kind)

    def _encode_number(self, value: Any) -> int | float:
        if isinstance(value, bool):
            raise ValueError_(value)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError as exc:
                raise ValueError_(value) from exc
        if not isinstance(value, (int, float)):
            raise ValueError_(value)
        if self.type == "int":
            if value != int(value):
                raise ValueError_(value)
            return int(value)
        return round(float(value), self.scale) if self.scale or self.precision else float(value)

    def decoder(self) -> Any:
        """A function from the SQLite value to the JSON value, or None when they are the same."""
        kind = self.type
        if kind == "boolean":
            return _decode_bool
        if kind == "datetime":
            return _decode_datetime
        if kind == "int":
            return _decode_int
        if kind in NUMBER_TYPES:
            return _decode_float
        if kind in COMPOUND_TYPES:
            return _decode_json
        return None

    def describe(self) -> dict[str, Any]:
        """The field's entry in an object describe."""
        calculated = self.formula is not None and not self.derived
        picklist = [
            {
                "active": v.active,
                "defaultValue": v.default,
                "label": v.label or v.value,
                "validFor": None,
                "value": v.value,
            }
            for v in self.picklist
        ]
        numeric = self.type in NUMBER_TYPES
        return {
            "aggregatable": self.type not in ("textarea", "multipicklist", *COMPOUND_TYPES),
            "autoNumber": False,
            "byteLength": 0 if numeric or self.type in ("boolean", "date", "datetime") else self.length * 3,
            "calculated": calculated,
            "calculatedFormula": self.formula if calculated else None,
            "cascadeDelete": self.cascade_delete,
            "caseSensitive": False,
            "compoundFieldName": self.compound_name,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type == "boolean" else None,
            "defaultedOnCreate": self.system or self.default is not None,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.precision if self.type == "int" else 0,
            "externalId": self.external_id,
            "extraTypeInfo": "plaintextarea" if self.type == "textarea" else None,
            "filterable": self.filterable,
            "groupable": self.type not in _UNGROUPABLE,
            "htmlFormatted": False,
            "idLookup": self.type == "id" or self.external_id,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": len(self.reference_to) > 1,
            "nillable": self.nillable,
            "permissionable": not (self.required or self.system or self.components),
            "picklistValues": picklist,
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision if numeric and self.type != "int" else 0,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedPicklist": self.restricted,
            "scale": self.scale if numeric and self.type != "int" else 0,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.sortable,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


def format_date(ms: int) -> str:
    """The date part (UTC) of epoch milliseconds, as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def _decode_bool(value: Any) -> bool:
    return bool(value)


def _decode_datetime(value: Any) -> str | None:
    return None if value is None else format_datetime(value)


def _decode_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _decode_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _decode_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


class SObject:
    """An sObject type: its fields in describe order, relationships and validation rules."""

    def __init__(self, definition: ObjectDef) -> None:
        self.definition = definition
        self.name = definition.name
        self.key_prefix = definition.key_prefix
        self.custom = definition.custom
        self.owned = definition.owned
        self.fields: dict[str, SField] = {}
        for f in [
            *_system_fields_before(self),
            *map(self._declared, definition.fields),
            *_system_fields_after(self),
        ]:
            self.fields[f.name.lower()] = f
        for f in self.fields.values():
            parts = components(f.name, f.type).items()
            f.components = tuple((key, self.fields[name.lower()]) for key, name in parts)
            for _, part in f.components:
                part.compound_name = f.name
        self.relationships = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name
        }
        self._sql_cache: dict[tuple[str, str], str] = {}
        self._compiling: set[str] = set()

    def _declared(self, d: FieldDef) -> SField:
        # Compound fields are read-only: their components are written instead.
        read_only = d.read_only or d.formula is not None or d.type in COMPOUND_TYPES
        length = 0
        if d.type in TEXT_TYPES or d.type == "reference":
            length = d.length or _DEFAULT_LENGTH[d.type]
        precision = d.precision or (18 if d.type in NUMBER_TYPES else 0)
        picklist = tuple(d.values)
        default = d.default
        if default is None and d.type == "boolean":
            default = False
        return SField(
            name=d.name,
            type=d.type,
            label=d.label or _label(d.name),
            obj=self,
            length=length,
            precision=precision,
            scale=d.scale or 0,
            required=d.required,
            createable=not read_only,
            updateable=not read_only,
            custom=d.name.endswith(("__c", "__s")),
            external_id=d.external_id,
            unique=d.unique,
            reference_to=tuple(d.reference_to),
            relationship_name=d.relationship_name
            or (d.name[:-2] if d.name.endswith("Id") and d.type == "reference" else None),
            on_delete=d.on_delete or ("restrict" if d.required else "clear"),
            undelete_restores=d.undelete_restores
            if d.undelete_restores is not None
            else d.name.endswith("__c"),
            picklist=picklist,
            restricted=d.restricted,
            default=default,
            formula=d.formula,
            derived=d.derived,
        )

    def field(self, name: str) -> SField | None:
        """The field named ``name`` (case-insensitive), or None."""
        return self.fields.get(name.lower())

    def stored_fields(self) -> list[SField]:
        return [f for f in self.fields.values() if f.stored]

    def field_sql(self, f: SField, alias: str) -> str:
        """SQL for a field on ``alias``; formulas compile (once per alias) over the other fields."""
        key = (f.name, alias)
        cached = self._sql_cache.get(key)
        if cached is not None:
            return cached
        if f.stored:
            sql = f'{alias}."{f.name}"'
        elif f.components:
            # Salesforce gives a compound as null when all its components are.
            parts = [part.sql(alias) for _, part in f.components]
            pairs = ", ".join(f"'{key}', {sql}" for (key, _), sql in zip(f.components, parts, strict=True))
            sql = f"CASE WHEN COALESCE({', '.join(parts)}) IS NOT NULL THEN json_object({pairs}) END"
        else:
            if f.name in self._compiling:
                raise formula.FormulaError(f.formula or "", f"{self.name}.{f.name} refers to itself")
            self._compiling.add(f.name)
            try:
                compiled = formula.compile_formula(f.formula or "", lambda n: self._formula_ref(n, alias))
            finally:
                self._compiling.discard(f.name)
            if compiled.kind != f.kind:
                raise formula.FormulaError(f.formula or "", f"{self.name}.{f.name} yields {compiled.kind}")
            sql = compiled.sql
        self._sql_cache[key] = sql
        return sql

    def _formula_ref(self, name: str, alias: str) -> tuple[str, str]:
        f = self.field(name)
        if f is None:
            raise formula.FormulaError(name, f"unknown field {name} on {self.name}")
        return f.sql(alias), f.kind

    def describe_global(self, version: str) -> dict[str, Any]:
        """The object's entry in the global describe."""
        d = self.definition
        return {
            "activateable": False,
            "createable": d.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": d.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": d.label,
            "labelPlural": d.label_plural,
            "layoutable": True,
            "mergeable": d.has_master_record,
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": d.deletable,
            "updateable": d.updateable,
            "urls": self.urls(version),
        }

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"rowTemplate": f"{base}/{{ID}}", "describe": f"{base}/describe", "sobject": base}


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ")


def _system(obj: SObject, name: str, type_: str, label: str, **kw: Any) -> SField:
    """A system field: read-only unless ``kw`` says otherwise."""
    kw = {"createable": False, "updateable": False, **kw}
    return SField(name=name, type=type_, label=label, obj=obj, system=True, **kw)


def _system_fields_before(obj: SObject) -> list[SField]:
    d = obj.definition
    fields = [_system(obj, "Id", "id", f"{d.label} ID", length=18)]
    # Users cannot be deleted, so Salesforce's User has no IsDeleted (the column exists for storage).
    if d.deletable:
        fields.append(_system(obj, "IsDeleted", "boolean", "Deleted", default=False))
    if d.has_master_record:
        fields.append(
            _system(
                obj,
                "MasterRecordId",
                "reference",
                "Master Record ID",
                length=18,
                reference_to=(d.name,),
                relationship_name="MasterRecord",
            )
        )
    return fields


def _system_fields_after(obj: SObject) -> list[SField]:
    user: dict[str, Any] = {"length": 18, "reference_to": ("User",)}
    fields = []
    if obj.owned:
        fields.append(
            _system(
                obj,
                "OwnerId",
                "reference",
                "Owner ID",
                relationship_name="Owner",
                createable=True,
                updateable=True,
                **user,
            )
        )
    return fields + [
        _system(obj, "CreatedDate", "datetime", "Created Date"),
        _system(obj, "CreatedById", "reference", "Created By ID", relationship_name="CreatedBy", **user),
        _system(obj, "LastModifiedDate", "datetime", "Last Modified Date"),
        _system(
            obj,
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            relationship_name="LastModifiedBy",
            **user,
        ),
        _system(obj, "SystemModstamp", "datetime", "System Modstamp"),
    ]


class Schema:
    """All objects of the org, looked up case-insensitively."""

    def __init__(self, org: OrgDef) -> None:
        self.definition = org
        self.objects: dict[str, SObject] = {}
        for d in org.objects:
            obj = SObject(d)
            self.objects[obj.name.lower()] = obj
        for obj in self.objects.values():
            for f in obj.fields.values():
                f.sql("t")  # compiles every formula now, so a bad one fails at startup
        self.hidden = {
            p.name: {o.lower(): self._hidden(o, fs) for o, fs in p.hidden_fields.items()}
            for p in org.profiles
        }

    def _hidden(self, obj_name: str, names: list[str]) -> set[str]:
        """Hidden field names; hiding a compound field hides its components (they share its security)."""
        fields = [self.objects[obj_name.lower()].fields[n.lower()] for n in names]
        parts = [part for f in fields for _, part in f.components]
        return {f.name.lower() for f in fields + parts}

    def get(self, name: str) -> SObject | None:
        """The object named ``name`` (case-insensitive), or None."""
        return self.objects.get(name.lower())

    def visible_fields(self, obj: SObject, profile: str) -> list[SField]:
        """The fields a profile may see (field-level security), in describe order."""
        hidden = self.hidden[profile].get(obj.name.lower(), set())
        return [f for k, f in obj.fields.items() if k not in hidden]

    def field_visible(self, f: SField, profile: str) -> bool:
        return f.name.lower() not in self.hidden[profile].get(f.obj.name.lower(), set())

    def by_prefix(self, record_id: str) -> SObject | None:
        """The object whose key prefix starts ``record_id``."""
        for obj in self.objects.values():
            if record_id.startswith(obj.key_prefix):
                return obj
        return None

    def child_relationships(self, obj: SObject) -> list[dict[str, Any]]:
        """Describe's ``childRelationships``: references from other objects to ``obj``."""
        children = []
        for child in self.objects.values():
            for f in child.fields.values():
                if obj.name in f.reference_to and not f.system:
                    plural = child.definition.label_plural.replace(" ", "")
                    children.append(
                        {
                            "cascadeDelete": f.cascade_delete,
                            "childSObject": child.name,
                            "deprecatedAndHidden": False,
                            "field": f.name,
                            "junctionIdListNames": [],
                            "junctionReferenceTo": [],
                            "restrictedDelete": f.on_delete == "restrict",
                            "relationshipName": f"{plural}__r" if f.custom else plural,
                        }
                    )
        return children

    def describe(self, obj: SObject, profile: str, version: str) -> dict[str, Any]:
        """The object describe, filtered by the caller's field-level security."""
        body = obj.describe_global(version)
        body.update(
            {
                "childRelationships": self.child_relationships(obj),
                "fields": [f.describe() for f in self.visible_fields(obj, profile)],
                "actionOverrides": [],
                "compactLayoutable": True,
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [],
                "searchLayoutable": True,
                "supportedScopes": [{"label": "All", "name": "everything"}],
            }
        )
        return body
