"""SOQL execution: compile a parsed query to parameterised SQLite SQL, page results through
server-side cursors, and read single records.

A query materialises the ordered rowids of its result once (one indexed SQL statement); every
page, including queryMore, then reads its rows by rowid. Paging is O(page) and the cursor is a
stable snapshot of the result set, as in Salesforce, with no OFFSET rescans.

Between pages the snapshot keeps its rows and each page reads their values as they are when it is
fetched: a record updated in between shows its new values, one deleted in between still comes back
(IsDeleted true), and a record added in between does not appear. A record purged (or hard-deleted) in
between can no longer be read: it leaves the snapshot, so later pages report a totalSize smaller by as
many and are filled from the following rows; the records a client receives always add up to the last
totalSize it is given. (Salesforce documents only that a batch may be smaller than asked for; how it
treats rows purged mid-cursor is not documented.)
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import soql
from .database import User, quote
from .errors import SalesforceError, not_found
from .ids import make_id, normalize_id
from .lexer import query_error, unquote
from .schema import COMPOUND_TYPES, NUMBER_TYPES, SField, SObject, parse_datetime
from .store import Org

MIN_BATCH, MAX_BATCH = 200, 2000
MAX_OFFSET = 2000
_PRINTF_ARGS = 120  # SQLite functions take at most 127 arguments (one is the format)
_LIVE_ROWS = 't."IsDeleted" = 0'  # the condition of query (not queryAll)
_WHOLE = 2_147_483_647  # a printf precision that takes a whole value
_COLUMN = re.compile(r't\."[^"]+"')  # a column of the queried object's own row
CURSOR_TTL_SECONDS = 15 * 60
CURSORS_PER_USER = 10  # Salesforce releases a user's oldest cursor when an 11th opens
_CUSTOM_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field "
    "name. Please reference your WSDL or the describe call for the appropriate names."
)
_TYPE_NAMES = {
    "boolean": "boolean",
    "int": "integer",
    "double": "double",
    "currency": "currency",
    "percent": "percent",
    "date": "date",
    "datetime": "dateTime",
}


def batch_size(header: str | None) -> int | None:
    """The batch size asked for in ``Sforce-Query-Options: batchSize=N``, clamped to 200..2000."""
    if not header:
        return None
    for option in header.split(","):
        key, _, value = option.strip().partition("=")
        if key.strip() == "batchSize" and value.strip().isdigit():
            return min(max(int(value), MIN_BATCH), MAX_BATCH)
    return None


@dataclass
class _Join:
    alias: str
    ref: SField
    target: SObject


@dataclass
class Plan:
    """A compiled query: SQL pieces and how to turn rows into records."""

    obj: SObject
    count: bool
    select: list[tuple[str | None, SField, str]]  # (relationship key or None, field, sql)
    joins: dict[str, _Join]
    join_sql: str
    join_params: list[Any]
    where_sql: str
    where_params: list[Any]
    order_sql: str
    limit: int | None
    offset: int | None
    # The first ORDER BY key where it is a stored column of the object itself, ascending, nulls first
    # (``t."SystemModstamp"``): the result is then ordered by ranges of it, and can be read range by range.
    leading: str | None = None
    ordered: bool = False  # the query has an ORDER BY (order_sql always orders, by rowid at least)

    def id_range(self, low: str | None, high: str | None) -> Plan:
        """This query restricted to Ids in [low, high) (a bound of None is open): a PK chunk of it."""
        bounds = [(">=", low), ("<", high)]
        where = [f't."Id" {op} ?' for op, value in bounds if value is not None]
        params = [value for _, value in bounds if value is not None]
        # The Id conditions go first: the IsDeleted test stays last (see csv).
        return replace(
            self,
            where_sql=" AND ".join([*where, self.where_sql]),
            where_params=[*params, *self.where_params],
        )

    @property
    def selects_compound(self) -> bool:
        """Whether an address or geolocation field is selected (the Bulk APIs cannot read them)."""
        return any(f.type in COMPOUND_TYPES for _, f, _ in self.select)

    def rowids(self, conn: Any, export: bool = False) -> array[int]:
        """The ordered rowids of the whole result (LIMIT and OFFSET applied); ``export``: tested as ``csv``
        tests them (the IsDeleted test on no index)."""
        where = self._export_where() if export else self.where_sql
        sql = f"SELECT t.rowid FROM {quote(self.obj.name)} t{self.join_sql} WHERE {where}"
        sql += f" {self.order_sql}"
        params = [*self.join_params, *self.where_params]
        if self.limit is not None or self.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if self.limit is None else self.limit, self.offset or 0]
        return array("q", (row[0] for row in conn.execute(sql, params)))

    def count_rows(self, conn: Any) -> int:
        inner = f"SELECT 1 FROM {quote(self.obj.name)} t{self.join_sql} WHERE {self.where_sql}"
        params = [*self.join_params, *self.where_params]
        if self.limit is not None or self.offset:
            inner += " LIMIT ? OFFSET ?"
            params += [-1 if self.limit is None else self.limit, self.offset or 0]
        return int(conn.execute(f"SELECT COUNT(*) FROM ({inner})", params).fetchone()[0])

    def csv(self, delimiter: str, low: Any = None, high: Any = None) -> tuple[list[str], str, list[Any]]:
        """Bulk API 2.0 CSV: (header, SQL, parameters); the SQL yields each result row as one CSV line.

        Salesforce's Bulk CSV quotes every value and prints nulls as empty fields, booleans as
        true/false and datetimes as 2024-01-01T00:00:00.000Z. SQLite builds the line (UTF-8 bytes) with
        printf, so a million-row export costs one bytes object per row in Python. The last two parameters
        are LIMIT (-1: none) and OFFSET, so a job can read its result in slices; ``low`` and ``high`` keep
        the rows whose ``leading`` key is in [low, high) instead (nulls with the first range).
        """
        header, line = self._csv_line(delimiter)
        where, bounds = self._export_where(), []
        if low is not None:
            where += f" AND {self.leading} >= ?"
            bounds.append(low)
        if high is not None:
            where += f" AND ({self.leading} < ?{f' OR {self.leading} IS NULL' if low is None else ''})"
            bounds.append(high)
        sql = f"SELECT {line} FROM {quote(self.obj.name)} t{self.join_sql} WHERE {where}"
        sql += f" {self.order_sql} LIMIT ? OFFSET ?"
        limit = -1 if self.limit is None else self.limit
        return header, sql, [*self.join_params, *self.where_params, *bounds, limit, 0]

    def leading_sample(self, conn: Any, every: int) -> list[Any]:
        """The ``leading`` keys (nulls first), in order, of the export's rows whose rowid is a multiple of
        ``every``: tested on the index entries, so the rest of the rows are never read."""
        sql = (
            f"SELECT {self.leading} FROM {quote(self.obj.name)} t{self.join_sql} WHERE t.rowid % ? = 0"
            f" AND {self._export_where()} ORDER BY {self.leading}"
        )
        return [row[0] for row in conn.execute(sql, [*self.join_params, every, *self.where_params])]

    def _export_where(self) -> str:
        # An export reads every column of its rows: the IsDeleted index (a SEARCH in SystemModstamp order,
        # then a sort of every formatted line) loses to a scan in rowid order, and the sampled statistics
        # take IsDeleted = 0 for a rare value (see Org.analyze), so that test uses no index. Other
        # conditions keep theirs.
        where = self.where_sql
        if where.endswith(_LIVE_ROWS):
            where = where.removesuffix(_LIVE_ROWS) + "+" + _LIVE_ROWS
        return where

    def csv_by_rowid(self, delimiter: str) -> tuple[str, list[Any]]:
        """The CSV lines of given rows, as ``csv`` formats them: (SQL, parameters after the first).

        The first parameter is a JSON array of rowids (of rows that exist, such as a slice of ``rowids``
        read in the same snapshot); the lines come in that array's order, each row looked up by rowid.
        """
        _, line = self._csv_line(delimiter)
        sql = (
            f"SELECT {line} FROM json_each(?) j CROSS JOIN {quote(self.obj.name)} t{self.join_sql} "
            "WHERE t.rowid = j.value"
        )
        return sql, [*self.join_params]

    def _csv_line(self, delimiter: str) -> tuple[list[str], str]:
        """The CSV header and the SQL expression of a row's line (a BLOB of UTF-8 bytes)."""
        header: list[str] = []
        pieces: list[tuple[str, list[str]]] = []  # (printf format, its arguments) per column
        for rel, f, sql in self.select:
            if rel is None:
                header.append(f.name)
                pieces.append(_csv_piece(f, sql))
                continue
            join = self.joins[rel]
            header.append(f"{join.ref.relationship_name}.{f.name}")
            text = _csv_text(f, sql)
            escaped = f"""REPLACE({text}, '"', '""')""" if f.kind == "text" else text
            # An absent (or invisible) parent shows every one of its fields as empty.
            pieces.append(
                ("%s", [f"""CASE WHEN {join.alias}."Id" IS NOT NULL THEN '"' || {escaped} || '"' END"""])
            )
        # SQLite functions take at most 127 arguments: one printf per at most 120 arguments.
        calls: list[str] = []
        formats: list[str] = []
        args: list[str] = []
        for fmt, fmt_args in pieces:
            if args and len(args) + len(fmt_args) > _PRINTF_ARGS:
                calls.append(f"printf('{delimiter.join(formats)}', {', '.join(args)})")
                formats, args = [], []
            formats.append(fmt)
            args.extend(fmt_args)
        if formats:
            calls.append(f"printf('{delimiter.join(formats)}', {', '.join(args)})")
        line = f" || '{delimiter}' || ".join(calls)
        return header, f"CAST({line} AS BLOB)"

    def records(self, conn: Any, rowids: array[int] | list[int], version: str) -> list[dict[str, Any]]:
        """The records of ``rowids``, in that order, shaped as the REST API returns them."""
        if not rowids:
            return []
        parent_ids = [f'{j.alias}."Id"' for j in self.joins.values()]
        cols = ", ".join(["t.rowid", 't."Id"', *parent_ids, *(sql for _, _, sql in self.select)])
        sql = (
            f"SELECT {cols} FROM {quote(self.obj.name)} t{self.join_sql} "
            f"WHERE t.rowid IN ({', '.join('?' * len(rowids))})"
        )
        rows = {row[0]: row for row in conn.execute(sql, [*self.join_params, *rowids])}
        build = self._builder(version)
        return [build(rows[r]) for r in rowids if r in rows]

    def _builder(self, version: str) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
        base = f"/services/data/v{version}/sobjects/"
        obj_url = base + self.obj.name + "/"
        first = 2 + len(self.joins)
        parent_index = {key: 2 + i for i, key in enumerate(self.joins)}
        steps = [(rel, f.name, first + i, f.decoder()) for i, (rel, f, _) in enumerate(self.select)]
        targets = {
            key: (j.ref.relationship_name or j.ref.name, base + j.target.name + "/", j.target.name)
            for key, j in self.joins.items()
        }

        def build(row: tuple[Any, ...]) -> dict[str, Any]:
            record: dict[str, Any] = {"attributes": {"type": self.obj.name, "url": obj_url + row[1]}}
            for rel, name, index, decode in steps:
                value = row[index]
                if decode is not None:
                    value = decode(value)
                if rel is None:
                    record[name] = value
                    continue
                rel_name, url, type_name = targets[rel]
                parent_id = row[parent_index[rel]]
                if parent_id is None:
                    record[rel_name] = None
                    continue
                parent = record.get(rel_name)
                if parent is None:
                    parent = record[rel_name] = {"attributes": {"type": type_name, "url": url + parent_id}}
                parent[name] = value
            return record

        return build


def _csv_text(f: SField, sql: str) -> str:
    """SQL for a field's value as Bulk API CSV text (NULL for null)."""
    if f.type == "boolean":
        return f"CASE WHEN {sql} THEN 'true' ELSE 'false' END"
    if f.type == "datetime":
        return f"strftime('%Y-%m-%dT%H:%M:%S', {sql} / 1000, 'unixepoch') || printf('.%03dZ', {sql} % 1000)"
    if f.type == "int":
        return f"CAST({sql} AS INTEGER)"
    return sql


def _csv_piece(f: SField, sql: str) -> tuple[str, list[str]]:
    """A field of the query's own object as a printf format and its arguments: the quoted value."""
    if f.type == "datetime" and f.formula is None:
        # Stored as integer milliseconds: %f prints the seconds with exactly those milliseconds.
        if f.nillable:  # a null is an empty, unquoted field (strftime gives NULL, which %s prints as nothing)
            return "%s", [f"""strftime('"%Y-%m-%dT%H:%M:%fZ"', {sql} / 1000.0, 'unixepoch')"""]
        return '"%w"', [f"strftime('%Y-%m-%dT%H:%M:%fZ', {sql} / 1000.0, 'unixepoch')"]
    text = _csv_text(f, sql)
    if not f.nillable:
        return '"%w"', [text]  # %w doubles the double quotes inside the value
    if f.formula is None and f.type != "boolean":
        # A stored column is cheap to read more than once: a precision of 0 (the value is null) prints
        # nothing at all, neither the quotes nor %w's "(NULL)"; %w doubles the double quotes inside.
        present = f"({sql} IS NOT NULL)"
        return "%.*s%.*w%.*s", [present, """'"'""", f"{present} * {_WHOLE}", text, present, """'"'"""]
    # printf's %s prints NULL as nothing, so a null stays an empty, unquoted field.
    escaped = f"""REPLACE({text}, '"', '""')""" if f.kind == "text" else text
    return "%s", [f"""'"' || {escaped} || '"'"""]


class _Compiler:
    """Resolves names against the schema and the caller's field-level security, and emits SQL."""

    def __init__(self, org: Org, user: User, obj: SObject, source: str | None) -> None:
        self.org = org
        self.user = user
        self.obj = obj
        self.source = source
        self.joins: dict[str, _Join] = {}
        self.join_params: list[Any] = []
        self.join_sql = ""
        self.params: list[Any] = []
        self.leading: str | None = None

    def error(self, pos: int, code: str, message: str) -> SalesforceError:
        if self.source is None:
            return SalesforceError(400, code, message)
        return query_error(self.source, pos, code, message)

    def no_such_column(self, name: str, obj: SObject, pos: int) -> SalesforceError:
        return self.error(
            pos, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'. {_CUSTOM_HINT}"
        )

    def field(self, obj: SObject, name: str, pos: int) -> SField:
        f = obj.field(name)
        if f is None or not self.org.schema.field_visible(f, self.user.profile):
            raise self.no_such_column(name, obj, pos)
        return f

    def resolve(self, path: soql.Path) -> tuple[str | None, SField, str]:
        """(relationship key or None, field, SQL) for a field path."""
        if len(path.parts) == 1:
            f = self.field(self.obj, path.parts[0], path.pos)
            return None, f, f.sql("t")
        rel_name, name = path.parts
        ref = self.obj.relationships.get(rel_name.lower())
        if ref is None or not self.org.schema.field_visible(ref, self.user.profile):
            raise self.error(
                path.pos,
                "INVALID_FIELD",
                f"Didn't understand relationship '{rel_name}' in field path. If you are attempting to "
                "use a custom relationship, be sure to append the '__r' after the custom relationship "
                "name. Please reference your WSDL or the describe call for the appropriate names.",
            )
        if len(ref.reference_to) != 1:
            raise self.error(
                path.pos,
                "INVALID_FIELD",
                f"Polymorphic relationship '{ref.relationship_name}' is not supported by the local org",
            )
        key = ref.name.lower()
        join = self.joins.get(key)
        if join is None:
            target = self.org.schema.objects[ref.reference_to[0].lower()]
            join = _Join(f"p{len(self.joins)}", ref, target)
            self.joins[key] = join
            cond, params = self.org.visibility(self.user, target, join.alias)
            # A parent the caller cannot see reads as null, like Salesforce.
            self.join_sql += (
                f' LEFT JOIN {quote(target.name)} {join.alias} ON {join.alias}."Id" = '
                f't.{quote(ref.name)} AND {join.alias}."IsDeleted" = 0 AND {cond}'
            )
            self.join_params += params
        f = self.field(join.target, name, path.pos)
        return key, f, f.sql(join.alias)

    def select(self, paths: tuple[soql.Path, ...]) -> list[tuple[str | None, SField, str]]:
        out = []
        seen: set[tuple[str | None, str]] = set()
        for path in paths:
            rel, f, sql = self.resolve(path)
            if (rel, f.name) in seen:
                raise self.error(path.pos, "INVALID_FIELD", f"duplicate field selected: {path.text}")
            seen.add((rel, f.name))
            out.append((rel, f, sql))
        return out

    # -- WHERE --------------------------------------------------------------------------------------

    def condition(self, cond: soql.Condition) -> str:
        if isinstance(cond, soql.BoolOp):
            return "(" + f" {cond.op} ".join(self.condition(c) for c in cond.items) + ")"
        if isinstance(cond, soql.Not):
            return f"(NOT {self.condition(cond.item)})"
        _, f, sql = self.resolve(cond.path)
        if f.type in COMPOUND_TYPES:  # describe says filterable: DISTANCE() may filter them (not modelled)
            raise self.error(
                cond.path.pos,
                "INVALID_FIELD",
                f"{f.type.capitalize()} fields can only be filtered using Distance expressions",
            )
        if not f.filterable:
            raise self.error(
                cond.path.pos, "INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call"
            )
        text = f.kind == "text" and f.type not in ("id", "reference")
        collate = " COLLATE NOCASE" if text else ""
        if isinstance(cond, soql.Like):
            if not text:
                raise self.error(
                    cond.pattern.token.pos, "INVALID_FIELD", f"invalid operator on {f.type} field: {f.name}"
                )
            assert self.source is not None
            self.params.append(unquote(self.source, cond.pattern.token, like=True))
            return f"({sql} LIKE ? ESCAPE '\\')"
        if isinstance(cond, soql.InList):
            values = [self.value(f, v) for v in cond.values]
            present = [v for v in values if v is not None]
            self.params += present
            marks = ", ".join("?" * len(present))
            has_null = len(present) != len(values)
            if cond.negated:  # SOQL's NOT IN, like !=, also matches nulls unless null is listed
                base = f"{sql} NOT IN ({marks}){collate}" if present else "1"
                return f"({base} AND {sql} IS NOT NULL)" if has_null else f"({base} OR {sql} IS NULL)"
            base = f"{sql} IN ({marks}){collate}" if present else "0"
            return f"({base} OR {sql} IS NULL)" if has_null else f"({base})"
        value = self.value(f, cond.value)
        if value is None:
            if cond.op not in ("=", "!="):
                raise self.error(
                    cond.value.token.pos, "MALFORMED_QUERY", f"unexpected token: {cond.value.token.text}"
                )
            return f"({sql} IS {'NOT ' if cond.op == '!=' else ''}NULL)"
        if f.type in ("boolean", "multipicklist") and cond.op not in ("=", "!="):
            raise self.error(
                cond.value.token.pos, "INVALID_FIELD", f"invalid operator on {f.type} field: {f.name}"
            )
        self.params.append(value)
        if cond.op == "!=":  # SOQL's != matches nulls, unlike SQL
            return f"({sql} != ?{collate} OR {sql} IS NULL)"
        return f"({sql} {cond.op} ?{collate})"

    def value(self, f: SField, literal: soql.Literal) -> Any:
        """A literal as the stored value of ``f``'s type; type mismatches are Salesforce's errors."""
        token = literal.token
        if literal.kind == "null":
            return None
        expected = _TYPE_NAMES.get(f.type, "string")
        quoted = expected == "string"

        def mismatch() -> SalesforceError:
            how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
            return self.error(
                token.pos,
                "INVALID_FIELD",
                f"value of filter criterion for field '{f.name}' must be of type {expected} and {how}",
            )

        if f.type == "boolean":
            if literal.kind != "boolean":
                raise mismatch()
            return 1 if token.upper == "TRUE" else 0
        if f.type in NUMBER_TYPES:
            if literal.kind != "number":
                raise mismatch()
            return float(token.text) if "." in token.text else int(token.text)
        if f.type == "date":
            if literal.kind != "date":
                raise mismatch()
            return token.text
        if f.type == "datetime":
            if literal.kind != "datetime":
                raise mismatch()
            return parse_datetime(token.text)
        if literal.kind != "string":
            raise mismatch()
        assert self.source is not None
        text = unquote(self.source, token)
        if f.type in ("id", "reference"):
            normalized = normalize_id(text)
            if normalized is None:
                raise self.error(token.pos, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}")
            return normalized
        return text

    def order(self, items: tuple[soql.OrderItem, ...]) -> str:
        """The ORDER BY clause; ``self.leading`` its first key where that is a stored column of the object
        itself, ascending, nulls first, compared as stored."""
        parts = []
        descending = False
        for item in items:
            _, f, sql = self.resolve(item.path)
            if not f.sortable:
                raise self.error(
                    item.path.pos, "INVALID_FIELD", f"field '{f.name}' can not be sorted in a query call"
                )
            if f.type == "id" and sql == 't."Id"':
                sql = "t.rowid"  # same order (see ids.make_id) and served by every index
            collate = " COLLATE NOCASE" if f.kind == "text" and f.type not in ("id", "reference") else ""
            direction = "DESC" if item.descending else "ASC"
            parts.append(f"{sql}{collate} {direction} NULLS {'FIRST' if item.nulls_first else 'LAST'}")
            if len(parts) == 1 and _COLUMN.fullmatch(sql) and f.formula is None and not collate:
                self.leading = sql if direction == "ASC" and item.nulls_first else None
            descending = item.descending
        if not parts or not parts[-1].startswith("t.rowid"):
            parts.append(f"t.rowid {'DESC' if descending else 'ASC'}")  # a total order keeps cursors stable
        return "ORDER BY " + ", ".join(parts)


@dataclass
class _Cursor:
    user_id: str
    plan: Plan
    rowids: array[int]
    batch: int
    endpoint: str
    last_used: float = field(default_factory=time.monotonic)


class QueryEngine:
    """Runs SOQL for users and keeps their query cursors."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = 0

    def compile(self, user: User, source: str, include_deleted: bool) -> Plan:
        """Parse and compile SOQL for ``user``."""
        parsed = soql.parse(source)
        obj = self.org.schema.get(parsed.sobject)
        if obj is None:
            raise query_error(
                source,
                parsed.sobject_pos,
                "INVALID_TYPE",
                f"sObject type '{parsed.sobject}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        if parsed.offset is not None and parsed.offset > MAX_OFFSET:
            raise SalesforceError(
                400, "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        c = _Compiler(self.org, user, obj, source)
        select = c.select(parsed.fields)
        where = [c.condition(parsed.where)] if parsed.where is not None else []
        where_params = c.params
        cond, vis_params = self.org.visibility(user, obj, "t")
        where.append(cond)
        if not include_deleted:
            where.append(_LIVE_ROWS)  # always the last condition (Plan.csv relies on it)
        order_sql = c.order(parsed.order)
        return Plan(
            obj,
            parsed.count,
            select,
            c.joins,
            c.join_sql,
            c.join_params,
            " AND ".join(where),
            [*where_params, *vis_params],
            order_sql,
            parsed.limit,
            parsed.offset,
            c.leading,
            bool(parsed.order),
        )

    def execute(
        self, user: User, source: str, include_deleted: bool, batch: int | None, version: str
    ) -> dict:
        """The first page of a query (``query/`` or ``queryAll/``)."""
        plan = self.compile(user, source, include_deleted)
        conn = self.org.conn()
        if plan.count:
            return {"totalSize": plan.count_rows(conn), "done": True, "records": []}
        rowids = plan.rowids(conn)
        endpoint = "queryAll" if include_deleted else "query"
        cursor = _Cursor(user.id, plan, rowids, batch or MAX_BATCH, endpoint)
        return self._page(cursor, 0, version, self._open(cursor) if len(rowids) > cursor.batch else None)

    def more(self, user: User, locator: str, batch: int | None, version: str) -> dict:
        """A later page: ``locator`` is ``<cursor id>-<position>`` from nextRecordsUrl."""
        cursor_id, _, position = locator.rpartition("-")
        with self._lock:
            self._expire()
            cursor = self._cursors.get(cursor_id)
            if cursor is not None:
                cursor.last_used = time.monotonic()
        if (
            cursor is None
            or cursor.user_id != user.id
            or not position.isdigit()
            or int(position) > len(cursor.rowids)
        ):
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if batch:
            cursor.batch = batch
        return self._page(cursor, int(position), version, cursor_id)

    def _page(self, cursor: _Cursor, start: int, version: str, cursor_id: str | None) -> dict:
        conn = self.org.conn()
        end = start + cursor.batch
        page = cursor.rowids[start:end]
        records = cursor.plan.records(conn, page, version)
        while len(records) < len(page):  # rows purged since the query ran: drop them, refill the page
            table = quote(cursor.plan.obj.name)
            sql = f"SELECT rowid FROM {table} WHERE rowid IN ({', '.join('?' * len(page))})"
            present = {row[0] for row in conn.execute(sql, list(page))}
            kept = array("q", (r for r in page if r in present))
            with self._lock:
                cursor.rowids = cursor.rowids[:start] + kept + cursor.rowids[end:]
            page = cursor.rowids[start:end]
            records = cursor.plan.records(conn, page, version)
        body: dict[str, Any] = {"totalSize": len(cursor.rowids), "done": end >= len(cursor.rowids)}
        if body["done"]:
            if cursor_id is not None:
                with self._lock:
                    self._cursors.pop(cursor_id, None)
        else:
            body["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{cursor_id}-{end}"
        body["records"] = records
        return body

    def _open(self, cursor: _Cursor) -> str:
        with self._lock:
            self._expire()
            self._counter += 1
            # Query locators look like record Ids with key prefix 01g.
            cursor_id = make_id("01g", self._counter * 7919 + secrets.randbelow(7919))[:15]
            self._cursors[cursor_id] = cursor
            mine = [k for k, c in self._cursors.items() if c.user_id == cursor.user_id]
            for stale in mine[:-CURSORS_PER_USER]:
                del self._cursors[stale]
            return cursor_id

    def _expire(self) -> None:
        deadline = time.monotonic() - CURSOR_TTL_SECONDS
        for key in [k for k, c in self._cursors.items() if c.last_used < deadline]:
            del self._cursors[key]

    # -- replication ------------------------------------------------------------------------------

    def updated_ids(self, user: User, obj: SObject, start: int, end: int) -> list[str]:
        """Ids of the live records the user sees whose SystemModstamp is in [start, end), oldest first
        (the updated/ feed)."""
        vis, params = self.org.visibility(user, obj, "t")
        sql = (
            f'SELECT t."Id" FROM {quote(obj.name)} t WHERE t."SystemModstamp" >= ? '
            f'AND t."SystemModstamp" < ? AND t."IsDeleted" = 0 AND {vis} ORDER BY t."SystemModstamp", t.rowid'
        )
        return [r[0] for r in self.org.conn().execute(sql, (start, end, *params))]

    # -- single records ---------------------------------------------------------------------------

    def retrieve(
        self, user: User, obj: SObject, record_id: str, fields: list[str] | None, version: str
    ) -> dict:
        """GET sobjects/X/Id: the record with all visible fields (or ``fields``)."""
        normalized = normalize_id(record_id)
        if normalized is None or not normalized.startswith(obj.key_prefix):
            if normalized is None:
                # Salesforce reads a non-Id path segment as the name of an external id field.
                raise not_found(
                    f"Provided external ID field does not exist or is not accessible: {record_id}"
                )
            raise not_found()
        return self._read_one(user, obj, 't."Id" = ?', [normalized], fields, version)

    def retrieve_by_external_id(
        self, user: User, obj: SObject, field_name: str, value: str, fields: list[str] | None, version: str
    ) -> dict:
        """GET sobjects/X/ExtField/value."""
        f = self.external_id_field(user, obj, field_name)
        return self._read_one(
            user, obj, f"{f.sql('t')} = ? COLLATE NOCASE", [f.encode(value)], fields, version
        )

    def external_id_field(self, user: User, obj: SObject, field_name: str) -> SField:
        f = obj.field(field_name)
        if (
            f is None
            or not (f.external_id or f.type == "id")
            or not self.org.schema.field_visible(f, user.profile)
        ):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {field_name}")
        return f

    def _read_one(
        self, user: User, obj: SObject, cond: str, params: list[Any], fields: list[str] | None, version: str
    ) -> dict:
        c = _Compiler(self.org, user, obj, None)
        names = fields or [f.name for f in self.org.schema.visible_fields(obj, user.profile)]
        select = c.select(tuple(soql.Path(tuple(n.strip().split(".")), 0) for n in names))
        vis, vis_params = self.org.visibility(user, obj, "t")
        plan = Plan(
            obj,
            False,
            select,
            c.joins,
            c.join_sql,
            c.join_params,
            f"{cond} AND {vis}",
            [*params, *vis_params],
            "ORDER BY t.rowid",
            None,
            None,
        )
        conn = self.org.conn()
        rowids = plan.rowids(conn)
        if not rowids:
            raise not_found()
        if len(rowids) > 1:
            urls = [
                f"/services/data/v{version}/sobjects/{obj.name}/{r['attributes']['url'].rsplit('/', 1)[1]}"
                for r in plan.records(conn, rowids, version)
            ]
            raise SalesforceError(300, "MULTIPLE_CHOICES", ", ".join(urls))
        deleted = conn.execute(
            f'SELECT "IsDeleted" FROM {quote(obj.name)} WHERE rowid = ?', (rowids[0],)
        ).fetchone()
        if deleted[0]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return plan.records(conn, rowids, version)[0]
