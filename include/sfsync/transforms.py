"""Salesforce fields as warehouse columns: which fields are synced, their Postgres types, their values.

Shared by the incremental sync and the full load, so both write exactly the same columns and values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Compound fields duplicate their components (BillingStreet, BillingCity...), which are synced instead;
# Salesforce's own tools (Bulk API, Data Loader) cannot read them either.
COMPOUND_TYPES = frozenset({"address", "location"})
NUMERIC_TYPES = frozenset({"double", "currency", "percent"})


@dataclass(frozen=True)
class Column:
    """One synced field: its API name, warehouse column name, Postgres type, and whether the integration
    user may set it on a new record and change it on an existing one (what write-back may send)."""

    field: str
    name: str
    pg_type: str
    createable: bool = True
    updateable: bool = True


def pg_type(describe_field: dict[str, Any]) -> str:
    """The Postgres type for a field of an object describe, keeping Salesforce's precision and scale."""
    kind = describe_field["type"]
    if kind == "boolean":
        return "boolean"
    if kind == "int":
        return "bigint"
    if kind in NUMERIC_TYPES:
        precision, scale = describe_field.get("precision") or 0, describe_field.get("scale") or 0
        return f"numeric({precision},{scale})" if precision else "numeric"
    if kind == "date":
        return "date"
    if kind == "datetime":
        return "timestamptz"
    if kind == "time":
        return "time"
    return "text"  # id, reference, string, picklist, textarea, email, ...: lengths only ever grow


def columns(
    describe: dict[str, Any], include: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> list[Column]:
    """The columns to sync from an object describe (which lists only the fields the caller can see).

    ``include`` (API names) narrows the set; a listed field the caller cannot see is simply absent, so a
    field becoming invisible never fails a run.
    """
    wanted = None if include is None else {f.lower() for f in include}
    skipped = {f.lower() for f in exclude}
    found = []
    for field in describe["fields"]:
        name = field["name"].lower()
        if field["type"] in COMPOUND_TYPES or name in skipped or (wanted is not None and name not in wanted):
            continue
        writable = (bool(field.get("createable")), bool(field.get("updateable")))
        found.append(Column(field["name"], name, pg_type(field), *writable))
    return found


def widen(old: str, new: str) -> str:
    """A type that holds every value of both ``old`` and ``new``: a type change must never lose data."""
    if old == new:
        return old
    if old.startswith("numeric") and new.startswith("numeric"):
        return _wider_numeric(old, new)
    if {old, new} == {"bigint", "numeric"} or (old == "bigint" and new.startswith("numeric")):
        return new if new == "numeric" else _wider_numeric("numeric(19,0)", new)
    if old.startswith("numeric") and new == "bigint":
        return _wider_numeric(old, "numeric(19,0)")
    if {old, new} == {"date", "timestamptz"}:
        return "timestamptz"
    return "text"  # every value has a lossless text form


def _wider_numeric(a: str, b: str) -> str:
    if "numeric" in (a, b):
        return "numeric"
    (pa, sa), (pb, sb) = (tuple(int(x) for x in t[8:-1].split(",")) for t in (a, b))
    scale = max(sa, sb)
    return f"numeric({max(pa - sa, pb - sb) + scale},{scale})"


def rows(records: Iterable[dict[str, Any]], fields: list[str]) -> Iterator[tuple[Any, ...]]:
    """REST query records as COPY rows in ``fields`` order.

    Values stay as Salesforce sends them (ISO strings, numbers, booleans, None) and Postgres parses them
    into the column types, exactly as it parses the Bulk API's CSV, so both paths convert alike.
    """
    for record in records:
        yield tuple(record.get(field) for field in fields)
