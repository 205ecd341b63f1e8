"""Salesforce fields as warehouse columns: which fields are synced, their Postgres types, their values.

Shared by the incremental sync and the full load, so both write exactly the same columns and values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sfsync.registry import SyncObject, UnknownFieldError

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


def synced(
    describe: dict[str, Any], include: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> list[Column]:
    """The columns to sync from an object describe (which lists only the fields the caller can see).

    ``include`` (API names) narrows the set; a listed field the caller cannot see is simply absent, so a
    field becoming invisible never fails a run (``check_fields`` tells a misspelt name from such a field).
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


def check_fields(entry: SyncObject, describe: dict[str, Any], known: Iterable[str] = ()) -> list[str]:
    """Check the field names a registry entry gives against its object's describe.

    The registry is validated without Salesforce, so a misspelt name would only show here: ``columns``
    skips it quietly, as it must for a field that became invisible. Names are compared case-insensitively;
    compound fields (addresses, locations) count as existing although they are never synced.

    Args:
        entry: The object's registry entry.
        describe: The object describe as the integration user sees it (invisible fields are absent).
        known: The fields the sync has seen before for this object, in any case (the columns of its
            warehouse table). One of them missing from the describe was deleted or hidden by field-level
            security, which must never fail a run: it only stops updating.

    Returns:
        Warnings for the log and the run summary, one line each naming the object and the field: a name in
        ``fields`` or ``conflicts.fields`` that vanished, and a name in ``exclude`` the object does not have.

    Raises:
        UnknownFieldError: ``fields`` or ``conflicts.fields`` names a field the describe lacks and the sync
            has never seen (a typo, or a field the integration user has never been able to read); one
            line per name, with the closest real field name when there is one.
    """
    present = {field["name"].lower(): field["name"] for field in describe["fields"]}
    seen = {name.lower() for name in known}
    listed = () if entry.fields == "all" else entry.fields
    unknown: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    # Each list, with what a field in it that vanished means (nothing, for an excluded one).
    lists: tuple[tuple[str, Iterable[str], str | None], ...] = (
        ("fields", listed, "its column stops updating"),
        ("conflicts.fields", entry.conflicts.fields, "its rule has nothing to decide"),
        ("exclude", entry.exclude, None),
    )
    for key, names, vanished in lists:
        for name in dict.fromkeys(names):  # a name listed twice is reported once
            if name.lower() in present:
                continue
            if name.lower() in seen:
                if vanished:
                    warnings.append(
                        f"{entry.sobject}: {key} names {name!r}, which the integration user can no longer see"
                        f" (deleted, or hidden by field-level security); {vanished}"
                    )
                continue
            problem = f"{entry.sobject}: {key} names {name!r}, which {entry.sobject} does not have"
            if close := difflib.get_close_matches(name.lower(), present, n=1):
                problem += f" (did you mean {present[close[0]]!r}?)"
            if key == "exclude":
                warnings.append(problem)
            else:
                unknown.append(name)
                errors.append(problem)
    if errors:
        raise UnknownFieldError(entry.sobject, unknown, errors)
    return warnings


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
