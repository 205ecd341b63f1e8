"""Every SOQL statement the sync sends: the delta window, the Id listing of reconciliation, reads by Id, a
full load's slices, their counts and an object's first record, and the one-record probe that reads the
org's API usage."""

from __future__ import annotations

from datetime import UTC, datetime

from simple_salesforce import format_soql


def literal(moment: datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, millisecond precision like SystemModstamp)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delta_query(sobject: str, fields: list[str], cursor: str, low: datetime | None, upper: datetime) -> str:
    """Records whose ``cursor`` is in ``[low, upper)`` (all up to ``upper`` when ``low`` is None).

    Ordered by cursor then Id, so records sharing a timestamp keep one stable order across pages, and a
    window resumed after its last complete timestamp neither skips nor repeats any of them.
    """
    where = f"{cursor} < {literal(upper)}"
    if low is not None:
        where = f"{cursor} >= {literal(low)} AND {where}"
    return f"SELECT {', '.join(fields)} FROM {sobject} WHERE {where} ORDER BY {cursor}, Id"


def id_query(sobject: str, fields: list[str]) -> str:
    """``fields`` (Id first) of every record the caller can see, deleted ones included through queryAll."""
    return f"SELECT {', '.join(fields)} FROM {sobject} ORDER BY Id"


def by_id_query(sobject: str, fields: list[str], ids: list[str]) -> str:
    """``fields`` of the records with these Ids (as Salesforce gave them: letters and digits only)."""
    if bad := [i for i in ids if not i.isalnum()]:
        raise ValueError(f"not a Salesforce Id: {bad[0]!r}")
    return format_soql(f"SELECT {', '.join(fields)} FROM {sobject} WHERE Id IN {{}}", ids)


def changed_since(
    sobject: str, fields: list[str], cursor: str, since: datetime | None, ids: list[str] | None
) -> str:
    """Id and ``fields`` of the records whose ``cursor`` is ``since`` or later (all when None), among ``ids``
    when given: what a push compares its changes with."""
    conditions = [f"{cursor} >= {literal(since)}"] if since else []
    if ids is not None:
        conditions.append(format_soql("Id IN {}", ids))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT Id, {', '.join(fields)} FROM {sobject}{where}"


def created_query(sobject: str, fields: list[str], start: datetime, end: datetime) -> str:
    """Records created in ``[start, end)``: one slice of a full load."""
    return (
        f"SELECT {', '.join(fields)} FROM {sobject}"
        f" WHERE CreatedDate >= {literal(start)} AND CreatedDate < {literal(end)}"
    )


def count_created(sobject: str, start: datetime, end: datetime) -> str:
    """How many records were created in ``[start, end)``: what a full load sizes its slices by."""
    return count_of(created_query(sobject, ["Id"], start, end))


def count_of(query: str) -> str:
    """``SELECT COUNT()`` with the same FROM and WHERE as ``query``."""
    return "SELECT COUNT() " + query[query.index(" FROM ") + 1 :].split(" ORDER BY ")[0]


def first_created(sobject: str) -> str:
    """The oldest record's CreatedDate: where a full load's first slice starts."""
    return f"SELECT CreatedDate FROM {sobject} ORDER BY CreatedDate LIMIT 1"


def probe(sobject: str) -> str:
    """One record at most: the smallest query, whose answer carries the org's API usage."""
    return f"SELECT Id FROM {sobject} LIMIT 1"


def user_id_query(username: str) -> str:
    """The Id of the user with this username (the integration user's, whose own changes events skip)."""
    return format_soql("SELECT Id FROM User WHERE Username = {}", username)
