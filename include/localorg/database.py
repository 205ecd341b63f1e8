"""The org's SQLite file: a table per sObject, the users, per-thread connections and write transactions.

Values are stored in sortable forms: datetimes as integer epoch milliseconds, dates as ISO text,
booleans as 0/1, text with case-insensitive collation (SOQL compares text case-insensitively). The
integer rowid is the record counter encoded in the Id, so ``ORDER BY Id`` is ``ORDER BY rowid`` and
every index implicitly ends with Id.
"""

from __future__ import annotations

import ctypes
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .changes import Change, ChangeCapture
from .changes import ensure_table as ensure_change_event_table
from .datadir import DB_FILE, FILE_MODE, make_private
from .ids import make_id
from .oauth import ensure_table as ensure_refresh_token_table
from .orgdef import OrgDef, UserDef
from .schema import NUMBER_TYPES, TEXT_TYPES, Schema, SObject, now_ms

_MMAP_BYTES = 1 << 34  # SQLite caps it at its compile-time limit
_SQLITE_CONFIG_MEMSTATUS = 9
_ANALYSIS_LIMIT = 1000  # index entries a sampled ANALYZE reads
_SAMPLED_KEYS = 20  # fewer keys than this in a sample: their rows per key are counted instead
_COUNTED_KEYS = 1000  # at most this many distinct values counted (a seek each)
# query/ always filters IsDeleted = 0, so IsDeleted leads a composite index that also serves the usual
# incremental-sync order (SystemModstamp, then Id = rowid, implicit in every index).
_INDEXES = (
    ("SystemModstamp",),
    ("CreatedDate",),
    ("LastModifiedDate",),
    ("OwnerId",),
    ("IsDeleted", "SystemModstamp"),
)
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
    """An open write transaction; every change in it gets the same timestamp ``ts``. ``changes`` are the
    record changes it made, which become Change Data Capture events when it commits."""

    conn: sqlite3.Connection
    ts: int
    user: User
    changes: list[Change] = field(default_factory=list)


def quote(name: str) -> str:
    """A quoted SQL identifier (object and field names are validated identifiers)."""
    return f'"{name}"'


class Database:
    """The org's SQLite store: schema, users, connections, and write transactions on the org clock."""

    def __init__(self, data_dir: Path, definition: OrgDef) -> None:
        self.data_dir = data_dir
        self.definition = definition
        self.schema = Schema(definition)
        self.path = data_dir / DB_FILE
        self._local = threading.local()
        self.write_lock = threading.RLock()  # this process's writers take turns
        # Called before every record write (fault injection: UNABLE_TO_LOCK_ROW); raises to fail the record.
        self.write_hook: Callable[[], None] | None = None
        make_private(data_dir)
        if not self.path.exists():
            self.path.touch(FILE_MODE)  # SQLite gives its -wal and -shm files the database file's mode
        conn = self.conn()
        with self.write_lock:
            self._create_tables(conn)
            self.org_id = self._bootstrap(conn)
            self.analyze()
        self.users = self._load_users(conn)
        self.changes = ChangeCapture(self)
        self._clock = 0  # the last stamp given in this process (stamps never go backwards)

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
        with self.write_lock:
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
        ensure_refresh_token_table(conn)  # the connected apps' refresh tokens (oauth.py)
        ensure_change_event_table(conn)  # Change Data Capture's event bus (changes.py)
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
                yield Txn(outer.conn, outer.ts, user, outer.changes)
            return
        with self.write_lock:
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            if at is None:
                # Wall-clock seconds, held back from going backwards if the clock steps back.
                self._clock = at = max(now_ms() // 1000 * 1000, self._clock)
            txn = Txn(conn, at, user)
            try:
                yield txn
                # The change events commit with the changes, as Salesforce's event bus takes them.
                published = self.changes.publish(txn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if published:
            self.changes.notify()

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
        staged = len(txn.changes)
        try:
            yield
        except BaseException:
            txn.conn.execute("ROLLBACK TO record")
            txn.conn.execute("RELEASE record")
            del txn.changes[staged:]  # what was undone publishes nothing
            raise
        txn.conn.execute("RELEASE record")

    # -- records ----------------------------------------------------------------------------------

    def stored_row(self, conn: sqlite3.Connection, obj: SObject, record_id: str) -> dict[str, Any] | None:
        """The stored values of a record (deleted or not), keyed by field name, or None."""
        fields = [f.name for f in obj.stored_fields()] + ["IsDeleted"]
        cols = ", ".join(quote(n) for n in dict.fromkeys(fields))
        cur = conn.execute(f'SELECT {cols} FROM {quote(obj.name)} WHERE "Id" = ?', (record_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    def before_write(self) -> None:
        """Every record write calls this first: the write hook, which may raise to fail the record."""
        if self.write_hook is not None:
            self.write_hook()

    def snapshot(self, count: int) -> list[sqlite3.Connection]:
        """``count`` new connections in read transactions on one snapshot of the store; the caller closes
        them."""
        conns = [self.connect(check_same_thread=False) for _ in range(count)]
        fence = self.conn()
        try:
            # SQLite's write lock, which every writer of every process takes: nothing commits until the
            # read transactions have all started.
            fence.execute("BEGIN IMMEDIATE")
            try:
                for conn in conns:
                    conn.execute("BEGIN")
                    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            finally:
                fence.execute("ROLLBACK")
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        return conns
