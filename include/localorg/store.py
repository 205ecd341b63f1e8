"""The org's storage: one SQLite file with a table per sObject, users, sharing, and every write.

Values are stored in sortable forms: datetimes as integer epoch milliseconds, dates as ISO text,
booleans as 0/1, text with case-insensitive collation (SOQL compares text case-insensitively). The
integer rowid is the record counter encoded in the Id, so ``ORDER BY Id`` is ``ORDER BY rowid`` and
every index implicitly ends with Id.
"""

from __future__ import annotations

import ctypes
import re
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .datadir import FILE_MODE, make_private
from .errors import RecordError, RecordValidationError, SalesforceError
from .formula import compile_formula
from .ids import make_id
from .orgdef import OrgDef, UserDef
from .schema import NUMBER_TYPES, TEXT_TYPES, Schema, SField, SObject, ValueError_, format_date, now_ms

DB_FILE = "org.sqlite"
RECYCLE_BIN_DAYS = 15
_DAY_MS = 86_400_000
_MMAP_BYTES = 1 << 34  # SQLite caps it at its compile-time limit
_SQLITE_CONFIG_MEMSTATUS = 9
_MINUTE_MS = 60_000
_ANALYSIS_LIMIT = 1000  # index entries a sampled ANALYZE reads
_SAMPLED_KEYS = 20  # fewer keys than this in a sample: their rows per key are counted instead
_COUNTED_KEYS = 1000  # at most this many distinct values counted (a seek each)
# Salesforce counts API requests over a rolling 24 hours, kept here in one-minute buckets.
_API_WINDOW_MINUTES = 24 * 60
MERGE_MAX_RECORDS = 3  # the master plus up to two duplicates, as in Salesforce's merge()
# query/ always filters IsDeleted = 0, so IsDeleted leads a composite index that also serves the usual
# incremental-sync order (SystemModstamp, then Id = rowid, implicit in every index).
_INDEXES = (
    ("SystemModstamp",),
    ("CreatedDate",),
    ("LastModifiedDate",),
    ("OwnerId",),
    ("IsDeleted", "SystemModstamp"),
)
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_STORAGE = {
    "boolean": "INTEGER NOT NULL DEFAULT 0",
    "int": "INTEGER",
    "datetime": "INTEGER",
    "date": "TEXT",
    "id": "TEXT",
    "reference": "TEXT",
    **{t: "REAL" for t in NUMBER_TYPES - {"int"}},
    **{t: "TEXT COLLATE NOCASE" for t in TEXT_TYPES},
}


def untrack_sqlite_memory() -> bool:
    """Stop SQLite's memory statistics in this process; call it before the process's first connection.

    Every SQLite allocation updates them under one process-wide mutex, so statements on several threads
    (a Bulk job's slices, concurrent requests) run no faster than one at a time, and even alone the
    allocation-heavy printf of Bulk CSV runs about a third slower. Linux only (sqlite3_config is
    variadic, which ctypes calls portably only there). Returns whether SQLite took the setting.
    """
    if sys.platform != "linux":
        return False
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)  # the SQLite that the sqlite3 module uses, linked or built in
        lib.sqlite3_config.argtypes = [ctypes.c_int, ctypes.c_int]
        configured = lib.sqlite3_shutdown() == 0 and lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, 0) == 0
        return lib.sqlite3_initialize() == 0 and configured
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class User:
    """An org user as the server sees it."""

    id: str
    username: str
    profile: str
    role: str
    view_all: bool
    definition: UserDef = field(repr=False)


@dataclass
class Txn:
    """An open write transaction; every change in it gets the same timestamp ``ts``."""

    conn: sqlite3.Connection
    ts: int
    user: User


def quote(name: str) -> str:
    """A quoted SQL identifier (object and field names are validated identifiers)."""
    return f'"{name}"'


class Org:
    """The org: schema, users, sharing and the SQLite store."""

    def __init__(self, data_dir: Path, definition: OrgDef) -> None:
        self.data_dir = data_dir
        self.definition = definition
        self.schema = Schema(definition)
        self.path = data_dir / DB_FILE
        self._local = threading.local()
        self._write_lock = threading.RLock()
        # Called before every record write (fault injection: UNABLE_TO_LOCK_ROW); raises to fail the record.
        self.write_hook: Callable[[], None] | None = None
        make_private(data_dir)
        if not self.path.exists():
            self.path.touch(FILE_MODE)  # SQLite gives its -wal and -shm files the database file's mode
        conn = self.conn()
        with self._write_lock:
            self._create_tables(conn)
            self.org_id = self._bootstrap(conn)
            self.analyze()
        self.users = self._load_users(conn)
        self._owners = self._sharing()
        self._clock = 0  # the last stamp given in this process (stamps never go backwards)
        self._rules = {
            obj.name: [
                (r, compile_formula(r.condition, partial(_param_ref, obj)))
                for r in obj.definition.validation_rules
            ]
            for obj in self.schema.objects.values()
        }

    # -- connections and schema -------------------------------------------------------------------

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections must not be shared across threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        """A new connection, which its caller closes."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=check_same_thread
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        # Reads through a memory map instead of a read() per page missing from the (small) page cache:
        # index-ordered reads of large results seek a page per row, and Bulk slices start with no cache.
        conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        return conn

    def analyze(self) -> None:
        """Refresh the planner's statistics (sampled, so cheap on large tables).

        Without them SQLite may pick the low-selectivity IsDeleted index over SystemModstamp. A sampled
        ANALYZE reads only the first ``_ANALYSIS_LIMIT`` entries or so of each index, though: where they
        share a few leading keys (OwnerId: a few values over the whole table), it reports about
        as many rows per key as it read, and the planner takes a user's visibility test ``OwnerId IN
        (...)`` for the most selective condition of a query, reading most of the table through that index
        (then sorting what it kept) instead of using a CreatedDate or SystemModstamp range. Such a leading
        column (without nulls) gets its real rows per key here: its distinct values are counted by
        seeking from one to the next through the index, a seek each. Flags keep the sample's figure:
        one number cannot say that IsDeleted = 1 is rare and IsDeleted = 0 is not, and the first is what
        their index is for (statements that test the second keep it from the index with a unary +).
        """
        with self._write_lock:
            conn = self.conn()
            conn.execute(f"PRAGMA analysis_limit = {_ANALYSIS_LIMIT}")
            conn.execute("ANALYZE")
            stats = conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1 WHERE idx IS NOT NULL").fetchall()
            fixed = []
            for table, index, stat in stats:
                parts = stat.split()
                if len(parts) < 2 or int(parts[1]) * _SAMPLED_KEYS < _ANALYSIS_LIMIT:
                    continue  # the sample saw enough keys for its estimate to stand
                columns = conn.execute(f"PRAGMA index_info({quote(index)})").fetchall()
                if not columns or columns[0][2] is None:
                    continue
                obj = self.schema.get(table)
                f = obj.field(columns[0][2]) if obj is not None else None
                if columns[0][2] == "IsDeleted" or f is not None and f.type == "boolean":
                    continue  # a flag: its index finds the rare value (IsDeleted = 1, the recycle bin)
                column, tbl = quote(columns[0][2]), quote(table)
                if conn.execute(f"SELECT 1 FROM {tbl} WHERE {column} IS NULL LIMIT 1").fetchone():
                    continue  # a mostly-null lookup: equality on a value still finds few rows
                keys = conn.execute(
                    f"WITH RECURSIVE k(v) AS (SELECT MIN({column}) FROM {tbl} UNION ALL "
                    f"SELECT (SELECT MIN({column}) FROM {tbl} WHERE {column} > k.v) FROM k "
                    f"WHERE k.v IS NOT NULL LIMIT {_COUNTED_KEYS}) SELECT COUNT(v) FROM k"
                ).fetchone()[0]
                if 0 < keys < _COUNTED_KEYS:
                    parts[1] = str(max(1, int(parts[0]) // keys))
                    fixed.append((" ".join(parts), table, index))
            if fixed:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx = ?", fixed)
                conn.execute("COMMIT")
                conn.execute("ANALYZE sqlite_schema")  # this connection reloads them; new ones read them

    def _create_tables(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS _meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _api_requests (minute INTEGER PRIMARY KEY, used INTEGER NOT NULL)"
        )
        # Records removed for good (hard delete, recycle bin purge) that the deleted/ feed still reports.
        conn.execute(
            'CREATE TABLE IF NOT EXISTS _purged ("Id" TEXT PRIMARY KEY, object TEXT NOT NULL, '
            '"DeletedDate" INTEGER NOT NULL, "OwnerId" TEXT, "ParentId" TEXT)'
        )
        conn.execute('CREATE INDEX IF NOT EXISTS "_purged_object" ON _purged (object, "DeletedDate")')
        # Lookups cleared by deleting the record they pointed at, which undeleting it puts back.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _cleared (parent TEXT NOT NULL, object TEXT NOT NULL, "
            "child TEXT NOT NULL, field TEXT NOT NULL)"
        )
        conn.execute('CREATE INDEX IF NOT EXISTS "_cleared_parent" ON _cleared (parent)')
        for obj in self.schema.objects.values():
            table = quote(obj.name)
            columns = {f.name: _STORAGE[f.type] for f in obj.stored_fields()}
            columns.setdefault("IsDeleted", _STORAGE["boolean"])
            columns["_DeletedDate"] = "INTEGER"
            # The record whose deletion cascaded to this one: undelete brings back exactly those (stamps
            # are whole seconds, so a deletion time cannot tell two deletions apart).
            columns["_CascadedFrom"] = "TEXT"
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (rowid INTEGER PRIMARY KEY)")
            existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in existing:  # a field added to the definition since the org was created
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(name)} {decl}")
            conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{obj.name}_Id" ON {table} ("Id")')
            for index in _INDEXES:
                if set(index) <= set(columns):
                    name = quote(f"{obj.name}_{'_'.join(index)}")
                    conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(map(quote, index))})"
                    )
            for f in obj.stored_fields():
                if f.external_id or f.type == "reference" and not f.system:
                    conn.execute(
                        f'CREATE INDEX IF NOT EXISTS "{obj.name}_{f.name}" ON {table} ({quote(f.name)})'
                    )

    def _bootstrap(self, conn: sqlite3.Connection) -> str:
        """Create the org Id and the declared users on first start; return the org Id."""
        row = conn.execute("SELECT value FROM _meta WHERE key = 'org_id'").fetchone()
        if row is not None:
            org_id: str = row[0]
        else:
            org_id = make_id("00D", 1)
            conn.execute("INSERT INTO _meta VALUES ('org_id', ?), ('created', ?)", (org_id, str(now_ms())))
        user_obj = self.schema.objects["user"]
        known = {r[0] for r in conn.execute('SELECT "Username" FROM "User"')}
        ts = now_ms()
        creator = make_id(user_obj.key_prefix, 1)
        for u in self.definition.users:
            if u.username in known:
                continue
            seq = conn.execute('SELECT COALESCE(MAX(rowid), 0) + 1 FROM "User"').fetchone()[0]
            values = {
                "Id": make_id(user_obj.key_prefix, seq),
                "Username": u.username,
                "FirstName": u.first_name,
                "LastName": u.last_name,
                "Alias": u.alias,
                "Email": u.email,
                "IsActive": 1,
                "CreatedDate": ts,
                "CreatedById": creator,
                "LastModifiedDate": ts,
                "LastModifiedById": creator,
                "SystemModstamp": ts,
            }
            names = ", ".join(quote(k) for k in values)
            conn.execute(
                f'INSERT INTO "User" (rowid, {names}) VALUES (?{", ?" * len(values)})',
                (seq, *values.values()),
            )
        return org_id

    def _load_users(self, conn: sqlite3.Connection) -> dict[str, User]:
        ids = dict(conn.execute('SELECT "Username", "Id" FROM "User"').fetchall())
        profiles = {p.name: p for p in self.definition.profiles}
        return {
            u.username: User(
                ids[u.username], u.username, u.profile, u.role, profiles[u.profile].view_all_data, u
            )
            for u in self.definition.users
        }

    def created_ms(self) -> int:
        """When the org was created: nothing was deleted (or purged) before that."""
        return int(self.conn().execute("SELECT value FROM _meta WHERE key = 'created'").fetchone()[0])

    def can_hard_delete(self, user: User) -> bool:
        """Whether the user's profile has the Bulk API Hard Delete permission."""
        return any(p.name == user.profile and p.bulk_api_hard_delete for p in self.definition.profiles)

    # -- sharing ----------------------------------------------------------------------------------

    def _sharing(self) -> dict[tuple[str, str], frozenset[str] | None]:
        """For each (user Id, object): the owners whose records the user sees, or None for all."""
        parents = {r.name: r.parent for r in self.definition.roles}

        def below(role: str) -> set[str]:
            found = {role}
            changed = True
            while changed:
                more = {r for r, p in parents.items() if p in found} - found
                found |= more
                changed = bool(more)
            return found

        def owners_in(roles: set[str]) -> set[str]:
            return {u.id for u in self.users.values() if u.role in roles}

        result: dict[tuple[str, str], frozenset[str] | None] = {}
        for user in self.users.values():
            for obj in self.schema.objects.values():
                default = self.definition.org_wide_defaults.get(obj.name, "public_read_write")
                if user.view_all or not obj.owned or default != "private":
                    result[(user.id, obj.name)] = None
                    continue
                # The role hierarchy: users see records owned by roles below their own.
                owners = {user.id} | owners_in(below(user.role) - {user.role})
                for rule in self.definition.sharing_rules:
                    if obj.name in rule.objects and rule.shared_with_role == user.role:
                        roles = (
                            below(rule.owned_by_role) if rule.include_subordinates else {rule.owned_by_role}
                        )
                        owners |= owners_in(roles)
                result[(user.id, obj.name)] = frozenset(owners)
        return result

    def visibility(self, user: User, obj: SObject, alias: str) -> tuple[str, list[Any]]:
        """A SQL condition (and its parameters) true for the records of ``obj`` the user may see."""
        if obj.definition.controlled_by is not None:
            ref = obj.field(obj.definition.controlled_by)
            assert ref is not None
            parent = self.schema.objects[ref.reference_to[0].lower()]
            inner_alias = f"{alias}_cb"
            cond, params = self.visibility(user, parent, inner_alias)
            if cond == "1":
                return "1", []
            sql = (
                f'{alias}.{quote(ref.name)} IN (SELECT {inner_alias}."Id" FROM {quote(parent.name)} '
                f"{inner_alias} WHERE {cond})"
            )
            return sql, params
        owners = self._owners[(user.id, obj.name)]
        if owners is None:
            return "1", []
        return f'{alias}."OwnerId" IN ({", ".join("?" * len(owners))})', sorted(owners)

    # -- clock and transactions -------------------------------------------------------------------

    @contextmanager
    def write(self, user: User, at: int | None = None) -> Iterator[Txn]:
        """A serialised write transaction with one timestamp: the org clock's current whole second.

        Salesforce stamps datetimes to the second, so transactions in one second share a stamp. The
        stamp is read once SQLite's write lock is held (``BEGIN IMMEDIATE`` serialises writers across
        processes too), so commits land in stamp order. ``at`` (epoch ms) backdates the transaction
        instead; only for seeding history in tests and demos.
        """
        outer: Txn | None = getattr(self._local, "txn", None)
        if outer is not None:
            # Inside ``transaction`` (a Composite allOrNone request): one savepoint of the open transaction.
            with self.savepoint(outer):
                yield Txn(outer.conn, outer.ts, user)
            return
        with self._write_lock:
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            if at is None:
                # Wall-clock seconds, held back from going backwards if the clock steps back.
                self._clock = at = max(now_ms() // 1000 * 1000, self._clock)
            try:
                yield Txn(conn, at, user)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def transaction(self, user: User) -> Iterator[Txn]:
        """One write transaction spanning several requests on this thread (Composite ``allOrNone``): every
        ``write`` inside it becomes a savepoint of it, and all of them commit or roll back together."""
        with self.write(user) as txn:
            self._local.txn = txn
            try:
                yield txn
            finally:
                self._local.txn = None

    @contextmanager
    def savepoint(self, txn: Txn) -> Iterator[None]:
        """A nested transaction: undone alone if the block raises."""
        txn.conn.execute("SAVEPOINT record")
        try:
            yield
        except BaseException:
            txn.conn.execute("ROLLBACK TO record")
            txn.conn.execute("RELEASE record")
            raise
        txn.conn.execute("RELEASE record")

    # -- API usage --------------------------------------------------------------------------------

    def count_api_request(self, limit: int) -> tuple[int, bool]:
        """Count one API request against the rolling 24-hour budget; returns (used, allowed)."""
        minute = now_ms() // _MINUTE_MS
        with self._write_lock:
            conn = self.conn()
            used = self._api_used(conn, minute)
            if used >= limit:
                return used, False
            conn.execute(
                "INSERT INTO _api_requests VALUES (?, 1) ON CONFLICT (minute) DO UPDATE SET used = used + 1",
                (minute,),
            )
            conn.execute("DELETE FROM _api_requests WHERE minute <= ?", (minute - _API_WINDOW_MINUTES,))
            return used + 1, True

    def api_usage(self) -> int:
        """API requests counted in the last 24 hours."""
        return self._api_used(self.conn(), now_ms() // _MINUTE_MS)

    @staticmethod
    def _api_used(conn: sqlite3.Connection, minute: int) -> int:
        sql = "SELECT COALESCE(SUM(used), 0) FROM _api_requests WHERE minute > ?"
        return int(conn.execute(sql, (minute - _API_WINDOW_MINUTES,)).fetchone()[0])

    # -- reads used by writes ---------------------------------------------------------------------

    def stored_row(self, conn: sqlite3.Connection, obj: SObject, record_id: str) -> dict[str, Any] | None:
        """The stored values of a record (deleted or not), keyed by field name, or None."""
        fields = [f.name for f in obj.stored_fields()] + ["IsDeleted"]
        cols = ", ".join(quote(n) for n in dict.fromkeys(fields))
        cur = conn.execute(f'SELECT {cols} FROM {quote(obj.name)} WHERE "Id" = ?', (record_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def is_visible(self, conn: sqlite3.Connection, user: User, obj: SObject, record_id: str) -> bool:
        cond, params = self.visibility(user, obj, "t")
        sql = f'SELECT 1 FROM {quote(obj.name)} t WHERE t."Id" = ? AND {cond}'
        return conn.execute(sql, (record_id, *params)).fetchone() is not None

    # -- writes -----------------------------------------------------------------------------------

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
        self._before_write()
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
            old = self._writable_row(txn, obj, record_id)
            merged = old | values
        self._validate(txn, obj, merged, values, record_id)
        if insert:
            return self._insert(txn, obj, merged)
        changed = {k: v for k, v in values.items() if old is None or old.get(k) != v}
        self._update(txn, obj, record_id or "", changed, system=False)
        if obj.definition.activity:
            self._roll_up_activity(txn, obj, [old or {}, merged])
        return record_id or ""

    def _writable_row(self, txn: Txn, obj: SObject, record_id: str) -> dict[str, Any]:
        if not obj.definition.updateable:
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object"
            )
        old = self.stored_row(txn.conn, obj, record_id)
        if old is None or not record_id.startswith(obj.key_prefix):
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        if not self.is_visible(txn.conn, txn.user, obj, record_id):
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
            )
        if old["IsDeleted"]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        if old.get("IsConverted"):
            raise SalesforceError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        return old

    def _before_write(self) -> None:
        if self.write_hook is not None:
            self.write_hook()

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
        if obj.definition.activity:
            self._roll_up_activity(txn, obj, [row])
        return record_id

    def _update(self, txn: Txn, obj: SObject, record_id: str, values: dict[str, Any], system: bool) -> None:
        """Write ``values``; a user change moves LastModifiedDate, a system change only SystemModstamp."""
        row = dict(values)
        if not system:
            row.update({"LastModifiedDate": txn.ts, "LastModifiedById": txn.user.id})
        row["SystemModstamp"] = txn.ts
        sets = ", ".join(f"{quote(k)} = ?" for k in row)
        txn.conn.execute(f'UPDATE {quote(obj.name)} SET {sets} WHERE "Id" = ?', (*row.values(), record_id))

    def delete(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Move a record (and its cascade-deleted children) to the recycle bin."""
        self._check_deletable(obj)
        self._before_write()
        old = self._writable_row(txn, obj, record_id)
        self._soft_delete(txn, obj, record_id, old)

    def _check_deletable(self, obj: SObject) -> None:
        if not obj.definition.deletable:
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object"
            )

    def _soft_delete(
        self, txn: Txn, obj: SObject, record_id: str, old: dict[str, Any], parent: str | None = None
    ) -> None:
        for child, f in self._children(obj, "restrict"):
            self._refuse_delete(txn, obj, record_id, child, f)
        deleted = {"IsDeleted": 1, "_DeletedDate": txn.ts, "_CascadedFrom": parent}
        self._update(txn, obj, record_id, deleted, system=False)
        if obj.definition.activity:
            self._roll_up_activity(txn, obj, [old])
        for child, f in self._children(obj, "cascade"):
            for child_id in self._live_children(txn, child, f, record_id):
                child_row = self.stored_row(txn.conn, child, child_id) or {}
                self._soft_delete(txn, child, child_id, child_row, record_id)
        for child, f in self._children(obj, "clear"):
            for child_id in self._live_children(txn, child, f, record_id):
                # Clearing is a system change: SystemModstamp moves, LastModifiedDate does not.
                self._update(txn, child, child_id, {f.name: None}, system=True)
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
        if not self.is_visible(txn.conn, txn.user, obj, record_id):
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
            )
        if not row[0]:
            raise SalesforceError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])

    def undelete(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Restore a record from the recycle bin, with the children its deletion cascaded to."""
        self._before_write()
        self._binned_row(txn, obj, record_id)
        self._restore(txn, obj, record_id)

    def _restore(self, txn: Txn, obj: SObject, record_id: str) -> None:
        restored = {"IsDeleted": 0, "_DeletedDate": None, "_CascadedFrom": None}
        self._update(txn, obj, record_id, restored, system=False)
        if obj.definition.activity:
            self._roll_up_activity(txn, obj, [self.stored_row(txn.conn, obj, record_id) or {}])
        cleared = "SELECT object, child, field FROM _cleared WHERE parent = ?"
        for child_name, child_id, name in txn.conn.execute(cleared, (record_id,)).fetchall():
            # Salesforce puts back custom lookups (and Account.ParentId, Contact.ReportsToId) the delete
            # cleared, unless the child has been given another value since.
            child = self.schema.objects[child_name.lower()]
            table, column = quote(child.name), quote(name)
            sql = f'SELECT 1 FROM {table} WHERE "Id" = ? AND {column} IS NULL AND "IsDeleted" = 0'
            if txn.conn.execute(sql, (child_id,)).fetchone():
                self._update(txn, child, child_id, {name: record_id}, system=True)
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
        self._before_write()
        self._soft_delete(txn, obj, record_id, self._writable_row(txn, obj, record_id))
        self._purge(txn, obj, record_id)

    def purge(self, txn: Txn, obj: SObject, record_id: str) -> None:
        """Empty one record (and what its deletion cascaded to) out of the recycle bin."""
        self._binned_row(txn, obj, record_id)
        self._purge(txn, obj, record_id)

    def purge_expired(self, now: int | None = None) -> int:
        """Salesforce's nightly clean-up: purge what spent 15 days in the recycle bin, and forget
        purged records as old as that (which moves the deleted/ feed's earliestDateAvailable)."""
        cutoff = (now or now_ms()) - RECYCLE_BIN_DAYS * _DAY_MS
        admin = next(u for u in self.users.values() if u.view_all)
        count = 0
        with self.write(admin) as txn:
            for obj in self.schema.objects.values():
                sql = f'SELECT "Id" FROM {quote(obj.name)} WHERE "IsDeleted" = 1 AND "_DeletedDate" < ?'
                for (record_id,) in txn.conn.execute(sql, (cutoff,)).fetchall():
                    if self.stored_row(txn.conn, obj, record_id) is not None:  # not purged with its parent
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
        vis, params = self.visibility(user, obj, "t")
        parent = quote(obj.definition.controlled_by or "ParentId")
        sql = (
            f'SELECT t."Id", t."_DeletedDate" FROM {quote(obj.name)} t WHERE t."IsDeleted" = 1 '
            f'AND t."_DeletedDate" >= ? AND t."_DeletedDate" < ? AND {vis} '
            f'UNION ALL SELECT t."Id", t."_DeletedDate" FROM (SELECT "Id", "DeletedDate" AS "_DeletedDate", '
            f'"OwnerId", "ParentId" AS {parent} FROM _purged WHERE object = ?) t '
            f'WHERE t."_DeletedDate" >= ? AND t."_DeletedDate" < ? AND {vis} ORDER BY 2, 1'
        )
        rows = self.conn().execute(sql, (start, end, *params, obj.name, start, end, *params))
        return [(r[0], r[1]) for r in rows]

    def was_purged(self, record_id: str) -> bool:
        """Whether the record was purged (or hard-deleted) and the deleted/ feed still reports it."""
        return (
            self.conn().execute('SELECT 1 FROM _purged WHERE "Id" = ?', (record_id,)).fetchone() is not None
        )

    def earliest_deleted_available(self) -> int:
        """The deleted/ feed is complete from here on: the org's creation or the last forgotten purge."""
        row = self.conn().execute("SELECT value FROM _meta WHERE key = 'purged_through'").fetchone()
        return int(row[0]) if row else self.created_ms()

    # -- merge and lead conversion ----------------------------------------------------------------

    def merge(self, txn: Txn, obj: SObject, master_id: str, duplicate_ids: list[str]) -> None:
        """Salesforce's merge: children of the duplicates move to the master; the duplicates go to the
        recycle bin with MasterRecordId pointing at the master."""
        if not obj.definition.has_master_record:
            raise SalesforceError(400, "INVALID_TYPE", f"Cannot merge records of type {obj.name}", [])
        if not duplicate_ids or len(duplicate_ids) + 1 > MERGE_MAX_RECORDS or master_id in duplicate_ids:
            raise SalesforceError(
                400, "INVALID_OPERATION", "A merge takes a master and one or two other records", []
            )
        self._before_write()
        self._writable_row(txn, obj, master_id)
        for duplicate in duplicate_ids:
            old = self._writable_row(txn, obj, duplicate)
            self._reparent(txn, obj, duplicate, master_id)
            self._update(txn, obj, duplicate, {"MasterRecordId": master_id}, system=False)
            self._soft_delete(txn, obj, duplicate, old)
        self._update(txn, obj, master_id, {}, system=False)

    def _reparent(self, txn: Txn, obj: SObject, old_id: str, new_id: str) -> None:
        """Point every live reference to ``old_id`` at ``new_id``: an update of each child record."""
        for child in self.schema.objects.values():
            moved = False
            for f in child.fields.values():
                if f.system or f.type != "reference" or obj.name not in f.reference_to:
                    continue
                # A child that would duplicate one of the master's (a campaign membership) stays with
                # the duplicate and goes to the recycle bin with it, as in Salesforce.
                guards = self._unique_guards(child, f.name)
                cur = txn.conn.execute(
                    f'UPDATE {quote(child.name)} SET {quote(f.name)} = ?, "LastModifiedDate" = ?, '
                    '"LastModifiedById" = ?, "SystemModstamp" = ? '
                    f'WHERE {quote(f.name)} = ? AND +"IsDeleted" = 0 AND "Id" != ?{"".join(guards)}',
                    (new_id, txn.ts, txn.user.id, txn.ts, old_id, new_id, *[new_id] * len(guards)),
                )
                moved = moved or cur.rowcount > 0
            if moved and child.definition.activity:
                self._roll_up_activity(txn, child, [{"WhoId": new_id, "WhatId": new_id}])

    def convert_lead(
        self,
        txn: Txn,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        create_opportunity: bool = True,
        opportunity_name: str | None = None,
        converted_status: str = "Closed - Converted",
    ) -> dict[str, str | None]:
        """Salesforce's convertLead: create (or reuse) the Account and Contact, optionally create an
        Opportunity, move the lead's activities and campaign memberships, and lock the lead."""
        objects = self.schema.objects
        lead_obj = objects["lead"]
        self._before_write()
        lead = self._writable_row(txn, lead_obj, lead_id)
        status = lead_obj.fields["status"]
        if converted_status not in {v.value for v in status.picklist if v.active}:
            raise SalesforceError(400, "INVALID_STATUS", f"invalid convertedStatus: {converted_status}", [])
        values = self._api_values(lead_obj, lead)
        owner = {"OwnerId": lead["OwnerId"]}
        if account_id is None:
            account_id = self.save(txn, objects["account"], {**_mapped(values, _LEAD_TO_ACCOUNT), **owner})
        else:
            self._writable_row(txn, objects["account"], account_id)
        if contact_id is None:
            body = {**_mapped(values, _LEAD_TO_CONTACT), "AccountId": account_id, **owner}
            contact_id = self.save(txn, objects["contact"], body)
        elif self._writable_row(txn, objects["contact"], contact_id)["AccountId"] != account_id:
            raise SalesforceError(
                400, "INVALID_CROSS_REFERENCE_KEY", "The contact is not associated with the account", []
            )
        opportunity_id = None
        if create_opportunity:
            opportunity = {
                **_mapped(values, {"LeadSource": "LeadSource"}),
                "Name": opportunity_name or f"{values['Company']}-",
                "AccountId": account_id,
                "StageName": objects["opportunity"].fields["stagename"].picklist[0].value,
                "CloseDate": format_date(txn.ts),
                **owner,
            }
            opportunity_id = self.save(txn, objects["opportunity"], opportunity)
            role = {"OpportunityId": opportunity_id, "ContactId": contact_id, "IsPrimary": True}
            self.save(txn, objects["opportunitycontactrole"], role)
        converted = {
            "IsConverted": 1,
            "ConvertedDate": format_date(txn.ts),
            "ConvertedAccountId": account_id,
            "ConvertedContactId": contact_id,
            "ConvertedOpportunityId": opportunity_id,
            "Status": converted_status,
        }
        self._update(txn, lead_obj, lead_id, converted, system=False)
        self._move_converted(txn, lead_id, contact_id, opportunity_id or account_id)
        return {"accountId": account_id, "contactId": contact_id, "opportunityId": opportunity_id}

    def _move_converted(self, txn: Txn, lead_id: str, contact_id: str, what_id: str) -> None:
        """The lead's open activities move to the contact; its campaign memberships gain the contact."""
        stamp = '"LastModifiedDate" = ?, "LastModifiedById" = ?, "SystemModstamp" = ?'
        for act in (o for o in self.schema.objects.values() if o.definition.activity):
            txn.conn.execute(
                f'UPDATE {quote(act.name)} SET "WhoId" = ?, "WhatId" = COALESCE("WhatId", ?), {stamp} '
                'WHERE "WhoId" = ? AND +"IsDeleted" = 0',
                (contact_id, what_id, txn.ts, txn.user.id, txn.ts, lead_id),
            )
            self._roll_up_activity(txn, act, [{"WhoId": lead_id}, {"WhoId": contact_id, "WhatId": what_id}])
        member = self.schema.objects.get("campaignmember")
        if member is not None:
            # Where the contact is already in the campaign, its membership is kept and the lead's is left.
            guards = self._unique_guards(member, "ContactId")
            txn.conn.execute(
                f'UPDATE "CampaignMember" SET "ContactId" = ?, {stamp} '
                f'WHERE "LeadId" = ? AND "ContactId" IS NULL AND +"IsDeleted" = 0{"".join(guards)}',
                (contact_id, txn.ts, txn.user.id, txn.ts, lead_id, *[contact_id] * len(guards)),
            )

    @staticmethod
    def _unique_guards(obj: SObject, field_name: str) -> list[str]:
        """SQL conditions on an UPDATE of ``obj``, one ``?`` each (the new value of ``field_name``), that
        hold when the new value keeps every unique key with that field unique."""
        table = quote(obj.name)
        return [
            f' AND NOT EXISTS (SELECT 1 FROM {table} k WHERE k.{quote(field_name)} = ? AND +k."IsDeleted" = 0'
            + "".join(f" AND k.{quote(n)} = {table}.{quote(n)}" for n in key.fields if n != field_name)
            + ")"
            for key in obj.definition.unique_keys
            if field_name in key.fields
        ]

    @staticmethod
    def _api_values(obj: SObject, row: dict[str, Any]) -> dict[str, Any]:
        """Stored values as the API shows them (what ``save`` accepts)."""
        out = {}
        for name, value in row.items():
            f = obj.field(name)
            decode = f.decoder() if f is not None else None
            out[name] = decode(value) if decode is not None else value
        return out

    def _roll_up_activity(self, txn: Txn, activity: SObject, rows: list[dict[str, Any]]) -> None:
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
                self._update(txn, parent, target_id, {"LastActivityDate": latest}, system=True)

    # -- validation -------------------------------------------------------------------------------

    def _validate(
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
        if not self.is_visible(txn.conn, txn.user, target, value):
            return RecordError(
                "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
                "insufficient access rights on cross-reference id",
                [f.name],
            )
        return None

    # -- seeding ----------------------------------------------------------------------------------

    def seed(
        self,
        obj_name: str,
        records: Iterable[dict[str, Any]],
        owner: str,
        chunk: int = 10_000,
        at: int | None = None,
    ) -> int:
        """Insert records straight into the store (no API, no validation), for benchmarks and demos.

        ``records`` hold API-shaped values; system fields are filled as the API would. Returns the count.
        """
        obj = self.schema.objects[obj_name.lower()]
        user = self.users[owner]
        columns = [f for f in obj.stored_fields() if not f.system]
        names = [
            "Id",
            "IsDeleted",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
            *([] if not obj.owned else ["OwnerId"]),
            *(f.name for f in columns),
        ]
        sql = (
            f"INSERT INTO {quote(obj.name)} (rowid, {', '.join(map(quote, names))}) "
            f"VALUES (?{', ?' * len(names)})"
        )
        total = 0
        with self.write(user, at) as txn:
            seq = txn.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {quote(obj.name)}").fetchone()[0]
            batch: list[tuple[Any, ...]] = []
            for record in records:
                seq += 1
                system = (make_id(obj.key_prefix, seq), 0, txn.ts, user.id, txn.ts, user.id, txn.ts)
                owner_col = (user.id,) if obj.owned else ()
                batch.append(
                    (seq, *system, *owner_col, *(f.encode(record.get(f.name, f.default)) for f in columns))
                )
                if len(batch) >= chunk:
                    txn.conn.executemany(sql, batch)
                    total += len(batch)
                    batch.clear()
            txn.conn.executemany(sql, batch)
            total += len(batch)
        return total


_LEAD_TO_ACCOUNT = {
    "Company": "Name",
    "Industry": "Industry",
    "AnnualRevenue": "AnnualRevenue",
    "NumberOfEmployees": "NumberOfEmployees",
    "Phone": "Phone",
    "Website": "Website",
    "Street": "BillingStreet",
    "City": "BillingCity",
    "State": "BillingState",
    "PostalCode": "BillingPostalCode",
    "Country": "BillingCountry",
}
_LEAD_TO_CONTACT = {
    **{
        name: name
        for name in (
            *("Salutation", "FirstName", "LastName", "Title", "Email", "Phone", "MobilePhone"),
            *("LeadSource", "HasOptedOutOfEmail", "DoNotCall", "Description"),
        )
    },
    "Street": "MailingStreet",
    "City": "MailingCity",
    "State": "MailingState",
    "PostalCode": "MailingPostalCode",
    "Country": "MailingCountry",
}


def _mapped(values: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Lead values renamed for the records a conversion creates (Salesforce's standard field mapping)."""
    return {target: values[source] for source, target in mapping.items() if values.get(source) is not None}


def _param_ref(obj: SObject, name: str) -> tuple[str, str]:
    """Validation rules read the record being saved through named parameters."""
    f = obj.field(name)
    if f is None or not f.stored:
        raise SalesforceError(500, "INVALID_FORMULA", f"validation rules can only read stored fields: {name}")
    return f":f_{f.name.lower()}", f.kind
