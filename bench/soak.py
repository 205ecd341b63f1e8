"""The soak: many sync cycles of every object against an org that keeps changing and keeps failing, with
warehouse edits made meanwhile; then faults off, two clean cycles, and a field-by-field check that nothing
was lost, twinned or sent twice.

A cycle runs, for each object, the tasks of its DAG (bidirectional objects push, then pull: extract,
merge; every object then reconciles, forced), each attempt in a process of its own that may be SIGKILLed
at a random moment. A failed or killed attempt is retried with the same run id up to ``TASK_RETRIES``
times, like Airflow's retries; a task that still fails fails its run, and the next cycle (a new run id)
must recover. A push that fails does not stop the pull. Meanwhile:

- the local org's activity mode keeps creating, changing, deleting, merging and converting records;
- random ``count`` fault rules (seeded by ``--seed``) make API calls fail: 5xx, connections dropped after
  (and, where the org offers ``drop_before``, before) the server commits, latency, expired sessions,
  request-limit and lock errors, failed Bulk jobs and lost Bulk result pages;
- a thread edits, inserts and deletes Lead and Contact rows in the warehouse, and keeps a ledger of each.
  It edits only fields the activity mode never changes (so Salesforce holding anything else is a loss,
  not a race) and marks each insert with a unique Company (Lead) or LastName (Contact).

Then every table is compared with the org as the integration user reads it (as the integration tests'
``assert_table_matches_org`` does, but counting), and the ledger with Salesforce as an admin reads it.
Prints one block of figures; exits 1 if any figure marked "must be 0" is not.

Usage: python bench/soak.py [--cycles 20] [--objects Lead,Contact] [--seed 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import logging
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from common import seeded_stack
from simple_salesforce import Salesforce

from localorg.testing import RunningOrg
from sfsync import writeback
from sfsync.context import run_step
from sfsync.extract import extract
from sfsync.merge import merge
from sfsync.reconcile import reconcile
from sfsync.registry import DEFAULT_REGISTRY, load_registry

TASK_RETRIES = 3  # after the first attempt, as a DAG's default_args would give
TASK_TIMEOUT = 300.0  # seconds; an attempt still running then is killed and counts as failed
EDITED = "Lead", "Contact"
#: Fields the warehouse edits: text the activity mode never changes, present on Contact too (a converted
#: lead's edits go to its contact).
EDIT_FIELDS = {
    "Lead": ("Description", "MobilePhone"),
    "Contact": ("Description", "MobilePhone", "Department"),
}
PREFIX = {"Lead": "00Q", "Contact": "003"}
#: The field an insert is marked by (required, and never changed by the activity mode or the edits).
MARKER = {"Lead": "Company", "Contact": "LastName"}
#: Request routes a fault rule may target: what the sync calls (login, REST queries, composite, describe,
#: sObject Collections, Bulk query and ingest jobs).
ROUTES = (
    "/services/Soap/u/",
    "/query",
    "/queryAll",
    "/composite$",
    "composite/sobjects",
    "/describe",
    "/limits",
    "jobs/query",
    "jobs/ingest",
)
WRITES = (("composite/sobjects", "PATCH"), ("composite/sobjects", "DELETE"), ("jobs/ingest", "POST"))
BULK_PAGES = ("jobs/query/[^/]+/results", "successfulResults")
#: sync_errors that may stay, by operation: an edit of a record Salesforce deleted with no survivor, and a
#: delete Salesforce refuses (a contact with subscriptions): both wait for a person, by design.
EXPECTED_ERRORS = frozenset({("update", "ENTITY_IS_DELETED"), ("delete", "DELETE_FAILED")})


# -- One task attempt, in a process of its own -----------------------------------------------------------


def _attempt(step: str, sobject: str, run_id: str, extracted: Any, env: dict[str, str], out: str) -> None:
    """Run one task of one object's DAG run, as an Airflow worker would; its result goes to ``out``.json,
    its log to ``out``.log (stdout and stderr too), and the last line of a traceback to ``out``.err."""
    os.environ.update(env)  # the forkserver's environment is whatever the first caller had
    with open(f"{out}.log", "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )

    registry = load_registry()
    entry, settings = registry.get(sobject), registry.settings
    try:
        if step == "push":
            result = run_step(writeback.push, run_id, entry, settings=settings)
        elif step == "extract":
            result = run_step(extract, run_id, entry, settings=settings)
        elif step == "merge":  # what merge_into_target does with the extract's XCom
            merged = extracted["status"] == "extracted"
            result = run_step(merge, run_id, entry, extracted, settings=settings) if merged else extracted
        else:
            result = run_step(reconcile, run_id, entry, force=True, settings=settings)
    except BaseException as error:
        traceback.print_exc()
        Path(f"{out}.err").write_text(f"{type(error).__name__}: {error}".splitlines()[0][:300])
        raise SystemExit(1) from None
    Path(f"{out}.json").write_text(json.dumps(result, default=str))


@dataclass
class Tasks:
    """Runs task attempts in forked processes (the sync's imports done once, in the forkserver), kills
    some at random, retries like Airflow, and counts."""

    logs: Path
    env: dict[str, str]
    rng: random.Random
    kill_rate: float = 0.0
    attempts: int = 0
    killed: int = 0
    failed_attempts: int = 0
    failed_tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(
            [
                "sfsync.extract",
                "sfsync.merge",
                "sfsync.reconcile",
                "sfsync.writeback",
                "airflow.providers.salesforce.hooks.salesforce",
            ]
        )

    def run(self, step: str, sobject: str, run_id: str, extracted: Any = None) -> dict[str, Any] | None:
        """The task's result, or None when every attempt failed."""
        for attempt in range(1 + TASK_RETRIES):
            out = str(self.logs / f"{run_id}.{sobject}.{step}.{attempt}")
            self.attempts += 1
            process = self.context.Process(
                target=_attempt, args=(step, sobject, run_id, extracted, self.env, out), daemon=True
            )
            process.start()
            kill_at = self.rng.uniform(0.02, 1.5) if self.rng.random() < self.kill_rate else TASK_TIMEOUT
            process.join(kill_at)
            if process.exitcode is None:  # still running: SIGKILL, as an OOM killer or a lost worker would
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                if process.exitcode == -signal.SIGKILL:  # else it ended just before the signal
                    self.killed += kill_at < TASK_TIMEOUT
                    Path(f"{out}.err").write_text(f"SIGKILLed after {kill_at:.2f} s")
            if process.exitcode == 0:
                return json.loads(Path(f"{out}.json").read_text())
            self.failed_attempts += 1
            why = (
                Path(f"{out}.err").read_text() if Path(f"{out}.err").exists() else f"exit {process.exitcode}"
            )
            print(f"    {sobject} {step} attempt {attempt + 1} failed: {why}", flush=True)
        self.failed_tasks.append(f"{run_id} {sobject} {step}: {why} (log {out}.log)")
        return None


def sync_cycle(tasks: Tasks, registry_objects: dict[str, str], objects: list[str], run_id: str) -> set[str]:
    """One DAG run of each object; returns the objects whose run failed."""
    failed = set()
    for sobject in objects:
        ok = True
        if registry_objects[sobject] == "bidirectional":
            # By design the pull goes on when the push failed: its changes wait in the outbox.
            ok = tasks.run("push", sobject, run_id) is not None
        extracted = tasks.run("extract", sobject, run_id)
        merged = extracted and tasks.run("merge", sobject, run_id, extracted)
        # reconcile_ids runs when nothing upstream failed (trigger rule none_failed).
        reconciled = merged and tasks.run("reconcile", sobject, run_id)
        if not (ok and reconciled):
            failed.add(sobject)
    return failed


# -- Faults ------------------------------------------------------------------------------------------------


class Faults:
    """Random ``count`` rules through the org's admin endpoint; tallies what fired, by kind."""

    def __init__(self, org: RunningOrg, rng: random.Random) -> None:
        self.org, self.rng = org, rng
        status, listed = org.admin("faults", method="GET")
        assert status == 200, listed
        self.kinds = set(listed["kinds"])  # type: ignore[index]
        self.posted: dict[int, tuple[str, int]] = {}  # rule id -> (label, count)
        self.fired: Counter[str] = Counter()
        self.armed = 0

    def rule(self) -> dict[str, Any]:
        kinds = ["http_500", "http_502", "http_503", "drop", "latency", "invalid_session", "request_limit"]
        kinds += ["lock_row", "bulk_job_failed", "lost_bulk_page"]
        if "drop_before" in self.kinds:  # being added to the org: used once it is there
            kinds.append("drop_before")
        kind = self.rng.choice(kinds)
        rule: dict[str, Any] = {"kind": kind, "count": self.rng.randint(1, 2)}
        if kind == "lost_bulk_page":
            rule |= {"kind": self.rng.choice(["http_500", "drop"]), "route": self.rng.choice(BULK_PAGES)}
        elif kind == "lock_row":
            rule["route"] = self.rng.choice(["composite/sobjects", "jobs/ingest"])
        elif kind == "bulk_job_failed":
            rule["route"] = self.rng.choice(["jobs/query", "jobs/ingest"])
        elif kind in ("drop", "drop_before") and self.rng.random() < 2 / 3:
            # Writes are where a lost answer matters most: did the server commit or not? Collections
            # upsert and update with PATCH and delete with DELETE; a Bulk ingest job is made with POST.
            rule["route"], rule["method"] = self.rng.choice(WRITES)
        else:
            rule["route"] = self.rng.choice(ROUTES)
        if kind == "latency":
            rule["latency_ms"] = self.rng.randint(200, 2000)
        rule["label"] = kind
        return {k: v for k, v in rule.items() if v is not None}

    def arm(self, rules: int) -> None:
        for _ in range(rules):
            spec = self.rule()
            label = spec.pop("label")
            status, body = self.org.admin("faults", spec)
            assert status == 200, body
            self.posted[body["rules"][0]["id"]] = (label, spec["count"])  # type: ignore[index]
            self.armed += 1

    def disarm(self) -> None:
        """Tally what fired (a rule whose count ran out is gone: it fired that often) and clear the rest."""
        _, listed = self.org.admin("faults", method="GET")
        left = {r["id"]: r["fired"] for r in listed["rules"]}  # type: ignore[index]
        for rule_id, (label, count) in self.posted.items():
            self.fired[label] += left.get(rule_id, count)
        self.posted.clear()
        self.org.admin("faults", method="DELETE")


# -- Warehouse edits -----------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every warehouse write the soak made: the latest value of each (object, row, column), the inserts
    (row -> marker) and the deletes (row -> Salesforce Id, when). Every value written is unique, and
    ``written`` tells when (the editor's sequence number)."""

    edits: dict[tuple[str, int, str], str] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    inserts: dict[tuple[str, int], str] = field(default_factory=dict)
    deletes: dict[tuple[str, int], tuple[str, dt.datetime]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    #: Deletes seen in Salesforce's recycle bin: the activity mode may restore a record later (the org's
    #: recycle bin holds few records besides ours), and the org keeps no trace of that.
    binned: set[str] = field(default_factory=set)

    def see_deletes(self, org_db: sqlite3.Connection) -> None:
        """Look into the org's own store (not through the API, where fault rules would hit the look)."""
        waiting = {sfid for sfid, _ in list(self.deletes.values())} - self.binned
        for sobject in EDITED:
            ids = sorted(i for i in waiting if i.startswith(PREFIX[sobject]))
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                query = f'SELECT "Id" FROM "{sobject}" WHERE "IsDeleted" = 1 AND "Id" IN ({marks})'
                self.binned |= {row[0] for row in org_db.execute(query, chunk)}


class Editor(threading.Thread):
    """Edits, inserts and deletes Lead and Contact rows while the cycles run, as warehouse users would."""

    def __init__(
        self, url: str, org_db: Path, rng: random.Random, ledger: Ledger, tag: str, edited: list[str]
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.org_db, self.rng, self.ledger = url, org_db, rng, ledger
        self.tag, self.edited = tag, edited
        self.stop = threading.Event()
        self.seq = 0
        self.refused: Counter[str] = Counter()

    def run(self) -> None:
        org_db = sqlite3.connect(f"file:{self.org_db}?mode=ro", uri=True)
        with psycopg.connect(self.url, autocommit=True) as conn, closing(org_db):
            while self.edited and not self.stop.wait(self.rng.uniform(0.1, 0.6)):
                self.ledger.see_deletes(org_db)
                sobject = self.rng.choice(self.edited)
                operation = self.rng.choices(["update", "burst", "insert", "delete"], [60, 3, 25, 12])[0]
                self.seq += 1
                try:
                    getattr(self, operation)(conn, sobject)
                except psycopg.errors.UndefinedTable:
                    pass  # the first cycle has not created it yet
                except psycopg.Error as error:  # a deadlock with a merge, say: the writer's statement fails
                    self.refused[type(error).__name__] += 1

    def _live(self, conn: psycopg.Connection, sobject: str, rows: int, with_id: bool) -> list[int]:
        where = "NOT isdeleted" + (" AND NOT isconverted" if sobject == "Lead" else "")
        where += " AND id IS NOT NULL" if with_id else ""
        table = f"salesforce.{sobject.lower()}"
        query = f"SELECT _sfsync_row_id FROM {table} WHERE {where} ORDER BY random() LIMIT %s"
        return [r[0] for r in conn.execute(query, [rows]).fetchall()]

    def update(self, conn: psycopg.Connection, sobject: str, rows: int | None = None) -> None:
        column = self.rng.choice(EDIT_FIELDS[sobject]).lower()
        # Rows not pushed yet too: their edits fold into the insert.
        targets = self._live(conn, sobject, rows or self.rng.randint(1, 3), with_id=False)
        value = (
            f"+1 555 {self.seq:07d}" if column == "mobilephone" else f"soak {self.tag} edit {self.seq} row "
        )
        changed = conn.execute(
            f"UPDATE salesforce.{sobject.lower()} SET {column} = %s || _sfsync_row_id"
            f" WHERE _sfsync_row_id = ANY(%s) RETURNING _sfsync_row_id, {column}",
            [value, targets],
        ).fetchall()
        for row_id, written in changed:
            self.ledger.edits[(sobject, row_id, column)] = written
            self.ledger.written[written] = self.seq
        self.ledger.counts[f"{sobject} updates"] += len(changed)

    def burst(self, conn: psycopg.Connection, sobject: str) -> None:
        """Many rows at once: above the Bulk threshold, the push goes through a Bulk ingest job."""
        self.update(conn, sobject, rows=self.rng.randint(100, 150))

    def insert(self, conn: psycopg.Connection, sobject: str) -> None:
        marker = f"Soak {self.tag} {sobject} {self.seq}"
        if sobject == "Lead":  # Salesforce's validation wants an Email or a Phone
            statement = "INSERT INTO salesforce.lead (lastname, company, email) VALUES ('Soakling', %s, %s)"
            params = [marker, f"soak{self.seq}.{self.tag}@example.com"]
        else:
            statement, params = "INSERT INTO salesforce.contact (lastname) VALUES (%s)", [marker]
        (row_id,) = conn.execute(statement + " RETURNING _sfsync_row_id", params).fetchone()  # type: ignore[misc]
        self.ledger.inserts[(sobject, row_id)] = marker
        self.ledger.counts[f"{sobject} inserts"] += 1

    def delete(self, conn: psycopg.Connection, sobject: str) -> None:
        targets = self._live(conn, sobject, 1, with_id=True)
        deleted = conn.execute(
            f"DELETE FROM salesforce.{sobject.lower()} WHERE _sfsync_row_id = ANY(%s)"
            " RETURNING _sfsync_row_id, id, now()",
            [targets],
        ).fetchall()
        for row_id, sfid, at in deleted:
            self.ledger.deletes[(sobject, row_id)] = (sfid, at)
            self.ledger.counts[f"{sobject} deletes"] += 1


# -- Final checks ----------------------------------------------------------------------------------------


def _same(sf_value: Any, pg_value: Any) -> bool:
    """As the integration tests compare a Salesforce value with a column's."""
    if sf_value is None or pg_value is None:
        return sf_value is None and pg_value is None
    if isinstance(pg_value, dt.datetime):
        return pg_value == dt.datetime.strptime(sf_value, "%Y-%m-%dT%H:%M:%S.%f%z")
    if isinstance(pg_value, dt.date):
        return pg_value.isoformat() == sf_value
    if isinstance(pg_value, decimal.Decimal | int | float) and not isinstance(pg_value, bool):
        return decimal.Decimal(str(sf_value)) == decimal.Decimal(str(pg_value))
    return bool(sf_value == pg_value)


@dataclass
class Findings:
    figures: Counter[str] = field(default_factory=Counter)
    examples: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, figure: str, example: str | None = None, n: int = 1) -> None:
        self.figures[figure] += n
        if example and len(self.examples[figure]) < 5:
            self.examples[figure].append(example)


def compare_table(sf: Salesforce, url: str, sobject: str, found: Findings) -> None:
    """``assert_table_matches_org``, counting: every record and field the integration user sees equals its
    row, and no other row is live."""
    fields = [
        f["name"]
        for f in getattr(sf, sobject).describe()["fields"]
        if f["type"] not in ("address", "location")
    ]
    records = {
        r["Id"]: r
        for r in sf.query_all(f"SELECT {', '.join(fields)} FROM {sobject}", include_deleted=True)["records"]
    }
    with psycopg.connect(url) as conn:
        cursor = conn.execute(f'SELECT * FROM salesforce."{sobject.lower()}"')
        names = [c.name for c in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    by_id = {r["id"]: r for r in rows if r["id"] is not None}
    found.add("rows compared", n=len(records))
    for row in rows:
        if row["id"] is None:
            found.add("rows pending (no id)", f"{sobject} row {row.get('_sfsync_row_id')}")
        elif row["id"] not in records and not row["isdeleted"]:
            found.add("rows extra", f"{sobject} {row['id']}: live in the warehouse, not in Salesforce")
    for record_id, record in records.items():
        row = by_id.get(record_id)
        if row is None:
            found.add(
                "rows lost", f"{sobject} {record_id} ({'deleted' if record.get('IsDeleted') else 'live'})"
            )
            continue
        diffs = [f for f in fields if not _same(record[f], row[f.lower()])]
        if (row["_sfsync_deleted_at"] is not None) != record.get("IsDeleted", False):
            diffs.append("_sfsync_deleted_at")
        if diffs:
            f = diffs[0]
            shown = f"{record.get(f)!r} vs {row.get(f.lower())!r}" if f in record else ""
            found.add("rows different", f"{sobject} {record_id}: {', '.join(diffs)} ({f}: {shown})")


def _chunks(items: list[str], size: int = 200) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _records(admin: Salesforce, sobject: str, fields: list[str], where: str = "") -> list[dict[str, Any]]:
    query = f"SELECT {', '.join(fields)} FROM {sobject} {where}"
    return admin.query_all(query, include_deleted=True)["records"]


def check_ledger(
    sf: Salesforce,
    admin: Salesforce,
    url: str,
    ledger: Ledger,
    edited: list[str],
    integration_id: str,
    found: Findings,
) -> None:
    """Each warehouse write against Salesforce, as the admin sees it (every record, deleted ones too)."""
    with psycopg.connect(url) as conn:
        (installation,) = conn.execute("SELECT id FROM sfsync.installation").fetchone()  # type: ignore[misc]
        rows = {
            sobject: {
                r[0]: r[1:]
                for r in conn.execute(
                    f"SELECT _sfsync_row_id, id, warehouse_id__c, {MARKER[sobject].lower()}"
                    f" FROM salesforce.{sobject.lower()}"
                ).fetchall()
            }
            for sobject in edited
        }
        conceded = {
            (s, r, f): json.dumps(w)
            for s, r, f, w in conn.execute(
                "SELECT sobject, row_id, field, warehouse_value FROM sfsync.conflicts"
                " WHERE winner = 'salesforce'"
            ).fetchall()
        }
        errors = conn.execute(
            "SELECT sobject, row_id, sfid, operation, status_code, message FROM sfsync.sync_errors"
        ).fetchall()
        # Where the sync says it wrote a row's changes instead (a merge survivor, a converted lead's
        # contact): a place to look, should the org have lost the link (a converted contact deleted and
        # restored loses its lead's ConvertedContactId).
        redirects = defaultdict(set)
        for obj, row_id, target in conn.execute(
            "SELECT DISTINCT sobject, row_id, pushed_to FROM sfsync.outbox WHERE pushed_to IS NOT NULL"
        ).fetchall():
            redirects[(obj, row_id)].add(target)
    chain_fields = {
        "Lead": ["Id", "IsDeleted", "MasterRecordId", "IsConverted", "ConvertedContactId", "LastModifiedById",
                 "SystemModstamp", "Warehouse_Id__c", "CreatedById", "Company", *EDIT_FIELDS["Lead"]],
        "Contact": ["Id", "IsDeleted", "MasterRecordId", "LastModifiedById", "SystemModstamp",
                    "Warehouse_Id__c", "CreatedById", "LastName", *EDIT_FIELDS["Contact"]],
    }  # fmt: skip
    org = {s: {r["Id"]: r for r in _records(admin, s, chain_fields[s])} for s in edited}
    # A merge may make a record the integration user cannot see the survivor: nothing reaches it.
    visible = {r["Id"] for s in edited for r in _records(sf, s, ["Id"])}

    # Twins: one record (or one warehouse key) behind two rows; two records with one warehouse key.
    for sobject in edited:
        table = sobject.lower()
        key_of = {str(uuid.uuid5(installation, f"{table}:{row_id}")): row_id for row_id in rows[sobject]}
        ids = Counter(r[0] for r in rows[sobject].values() if r[0])
        keys = Counter(r[1] for r in rows[sobject].values() if r[1])
        for sfid, n in ids.items():
            if n > 1:
                found.add("twins in the warehouse", f"{sobject} {sfid} in {n} rows", n - 1)
        for key, n in keys.items():
            if n > 1:
                found.add("twins in the warehouse", f"{sobject} warehouse key {key} in {n} rows", n - 1)
        for row_id, (sfid, key, _) in rows[sobject].items():
            owner = key_of.get(key)
            if owner is not None and owner != row_id and owner in rows[sobject]:
                found.add(
                    "twins in the warehouse", f"{sobject} row {row_id} ({sfid}) is row {owner}'s record"
                )
        sf_keys = Counter(r["Warehouse_Id__c"] for r in org[sobject].values() if r["Warehouse_Id__c"])
        for key, n in sf_keys.items():
            if n > 1:
                found.add("twins in Salesforce", f"{sobject} Warehouse_Id__c {key} on {n} records", n - 1)

    # Inserts: exactly one record each (deleted or merged away later or not), made by the integration user.
    for sobject in edited:
        made = Counter(
            r[MARKER[sobject]] for r in org[sobject].values() if r["CreatedById"] == integration_id
        )
        for (s, row_id), marker in ledger.inserts.items():
            if s != sobject:
                continue
            found.add("inserts checked")
            if made[marker] == 0:
                sfid = rows[sobject].get(row_id, (None,))[0]
                found.add(
                    "edits lost", f"{sobject} insert row {row_id} {marker!r}: no record (row id {sfid})"
                )
            elif made[marker] > 1:
                found.add(
                    "edits sent twice",
                    f"{sobject} insert {marker!r}: {made[marker]} records",
                    made[marker] - 1,
                )

    # Updates: the latest value of each edited field is in the record, or where Salesforce took it (a merge
    # survivor, a converted lead's contact), unless Salesforce deleted it first or won a conflict on it.
    def chain(sobject: str, sfid: str | None) -> Iterator[dict[str, Any]]:
        for _ in range(5):
            record = org.get(sobject, {}).get(sfid) if sfid else None
            if record is None:
                return
            yield record
            if record["IsDeleted"] and record["MasterRecordId"]:
                sfid = record["MasterRecordId"]
            elif record.get("IsConverted") and record.get("ConvertedContactId"):
                sobject, sfid = "Contact", record["ConvertedContactId"]
            else:
                return

    names = {f.lower(): f for fields in EDIT_FIELDS.values() for f in fields}
    deleted_then = {(e[0], e[1]): e[4] for e in errors if e[3] == "update"}
    for (sobject, row_id, column), value in ledger.edits.items():
        if (sobject, row_id) in ledger.deletes:
            continue  # the warehouse deleted the row afterwards: its record's fields no longer matter
        found.add("edits checked")
        sfid = rows[sobject].get(row_id, (None,))[0]
        records = list(chain(sobject, sfid))
        for other in redirects[(sobject, row_id)]:
            kind = next((s for s, prefix in PREFIX.items() if other.startswith(prefix)), sobject)
            records += [r for r in chain(kind, other) if r not in records]
        if any(r.get(names[column]) == value for r in records):
            continue
        # Another row whose record was merged into the same survivor, edited later (or by the same
        # statement): its value wins, as it would in Salesforce.
        later = [r for r in records if ledger.written.get(r.get(names[column]), -1) >= ledger.written[value]]
        if later:
            found.add("edits superseded by an edit of a merged record")
        elif records and records[-1]["IsDeleted"] and not records[-1]["MasterRecordId"]:
            found.add("edits overtaken by a Salesforce delete")
        elif records and records[-1]["Id"] not in visible:
            found.add("edits to a merge survivor the sync cannot see")
        elif conceded.get((sobject, row_id, column)) == json.dumps(value):
            found.add("edits Salesforce won in a conflict")
        elif deleted_then.get((sobject, row_id)) == "ENTITY_IS_DELETED":
            # Refused, with no survivor, while the record was in the recycle bin; restored since.
            found.add("edits overtaken by a Salesforce delete")
        else:
            seen = [r.get(names[column]) for r in records]
            found.add(
                "edits lost", f"{sobject} row {row_id} ({sfid}) {column} = {value!r}; Salesforce: {seen}"
            )

    # Deletes: the record is (or was, at the end of a cycle) in the recycle bin, unless someone else
    # restored or changed it since, or Salesforce refused the delete (the refusal waits in sync_errors).
    refused = {(e[0], e[1]): e[4] for e in errors if e[3] == "delete"}
    for (sobject, row_id), (sfid, at) in ledger.deletes.items():
        found.add("deletes checked")
        record = org[sobject].get(sfid)
        if record is None or record["IsDeleted"]:
            continue
        if sfid in ledger.binned:
            found.add("deletes Salesforce undid")
            continue
        stamp = dt.datetime.strptime(record["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
        if record["LastModifiedById"] != integration_id and stamp > at:
            found.add("deletes Salesforce undid")
        elif refused.get((sobject, row_id)) == "DELETE_FAILED":
            found.add("deletes Salesforce refused")
        else:
            found.add("edits lost", f"{sobject} delete of row {row_id} ({sfid}): the record is live")

    codes = Counter(f"{e[0]} {e[3]} {e[4]}" for e in errors)
    found.examples["sync errors left, by code"] = [f"{n} {what}" for what, n in codes.most_common()]
    for sobject, row_id, sfid, operation, code, message in errors:
        expected = (operation, code) in EXPECTED_ERRORS or (
            code == "INSUFFICIENT_ACCESS_OR_READONLY" and sfid not in visible
        )
        figure = "sync errors left (expected)" if expected else "sync errors left (unexpected)"
        found.add(figure, f"{sobject} row {row_id} {operation} {sfid}: {code}: {message[:150]}")


# -- The soak ------------------------------------------------------------------------------------------


def soak_registry(path: Path, bulk_threshold: int) -> None:
    """Every default object, deletes allowed for the edited ones, a low Bulk threshold so the Bulk paths
    run too, and short retry backoffs: the default minute would outlast the two clean cycles."""
    lines = ["objects:"]
    for entry in load_registry(DEFAULT_REGISTRY).objects:
        extra = ", allow_delete: true" if entry.sobject in EDITED else ""
        lines.append(
            f"  - {{sobject: {entry.sobject}, direction: {entry.direction},"
            f" bulk_threshold: {bulk_threshold}{extra}}}"
        )
    lines.append("settings: {retry_after_seconds: 1, retry_cap_seconds: 2}")
    path.write_text("\n".join(lines) + "\n")


def soak(args: argparse.Namespace, root: Path) -> Findings:
    rng = random.Random(args.seed)
    found = Findings()
    started = time.monotonic()
    with seeded_stack(root, args.leads, args.seed, every_object=True) as (org, pg):
        soak_registry(root / "soak.yaml", args.bulk_threshold)
        os.environ["SFSYNC_REGISTRY"] = str(root / "soak.yaml")
        registry = {e.sobject: e.direction for e in load_registry().enabled()}
        objects = args.objects.split(",") if args.objects else list(registry)
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW", "SFSYNC", "REQUESTS"))}
        tasks = Tasks(logs, env, random.Random(args.seed + 1), args.kill_rate)
        faults = Faults(org, random.Random(args.seed + 2))
        ledger = Ledger()
        edited = [sobject for sobject in EDITED if sobject in objects]
        org_db = org.data_dir / "org.sqlite"
        editor = Editor(pg.url(), org_db, random.Random(args.seed + 3), ledger, f"{args.seed}", edited)
        activity = subprocess.Popen(
            [sys.executable, "-m", "localorg", "activity", "--data", str(org.data_dir),
             "--seed", str(args.seed), "--rate", str(args.activity_rate)],
            cwd=Path(__import__("localorg").__file__).parents[1],
            stdout=subprocess.DEVNULL, stderr=open(logs / "activity.log", "wb"),
        )  # fmt: skip
        failing: set[str] = set()  # objects whose last run failed
        try:
            editor.start()
            for cycle in range(1, args.cycles + 1):
                faults.arm(rng.randint(1, args.faults) if args.faults else 0)  # 0: a control run
                failed = sync_cycle(tasks, registry, objects, f"soak__{cycle:03d}")
                faults.disarm()
                found.add("runs failed", n=len(failed))
                found.add("runs recovered", n=len(failing - failed))
                failing = (failing - set(objects)) | failed
                print(f"cycle {cycle}: {len(failed)} runs failed {sorted(failed) or ''}", flush=True)
        finally:
            editor.stop.set()
            activity.send_signal(signal.SIGINT)
            try:
                activity.wait(30)
            finally:
                activity.kill()  # once it has stopped, a no-op; otherwise it must not outlive the soak
            faults.disarm()
        editor.join()
        tasks.kill_rate = 0.0
        for clean in (1, 2):
            failed = sync_cycle(tasks, registry, objects, f"soak__clean{clean}")
            found.add("runs recovered", n=len(failing - failed))
            failing = (failing - set(objects)) | failed
            print(f"clean cycle {clean}: {len(failed)} runs failed {sorted(failed) or ''}", flush=True)
        found.add("runs not recovered", ", ".join(sorted(failing)) or None, n=len(failing))

        sf = Salesforce(**org.salesforce_kwargs("integration"))
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        for sobject in objects:
            compare_table(sf, pg.url(), sobject, found)
        integration = admin.query("SELECT Id FROM User WHERE Username = 'integration@localorg.test'")
        if edited:
            check_ledger(sf, admin, pg.url(), ledger, edited, integration["records"][0]["Id"], found)

    found.figures["cycles"] = args.cycles
    found.figures["task attempts"] = tasks.attempts
    found.figures["attempts failed"] = tasks.failed_attempts
    found.figures["attempts SIGKILLed"] = tasks.killed
    for label, n in faults.fired.items():
        found.figures[f"fault {label}"] = n
    found.figures["fault rules armed"] = faults.armed
    found.examples["fault kinds the org lacks (skipped)"] = sorted({"drop_before"} - faults.kinds)
    for label, n in ledger.counts.items():
        found.figures[f"warehouse {label}"] = n
    for label, n in editor.refused.items():
        found.figures[f"warehouse writes refused ({label})"] = n
    found.examples["tasks failed after retries"] = tasks.failed_tasks[:10]
    found.figures["seconds"] = round(time.monotonic() - started)
    return found


#: Figures that must be 0 for the soak to pass.
MUST_BE_ZERO = (
    "runs not recovered",
    "rows lost",
    "rows extra",
    "rows different",
    "rows pending (no id)",
    "twins in the warehouse",
    "twins in Salesforce",
    "edits lost",
    "edits sent twice",
    "sync errors left (unexpected)",
)


def report(found: Findings) -> int:
    """Print the figures as one block; the number of "must be 0" figures that are not."""
    figures = found.figures
    print("\nsoak figures")
    for name in sorted(n for n in figures if n not in MUST_BE_ZERO):
        print(f"  {name + ':':50s}{figures[name]:>8,}")
    bad = 0
    for name in MUST_BE_ZERO:
        bad += figures[name] != 0
        print(f"  {name + ':':50s}{figures[name]:>8,}   must be 0{'  <-- FAILED' if figures[name] else ''}")
    for name, examples in found.examples.items():
        if examples:
            print(f"  {name}:")
            for example in examples:
                print(f"    {example}")
    return bad


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument(
        "--objects", default="", help="comma-separated API names; default every registry object"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the org, the faults, the kills and the edits"
    )
    parser.add_argument("--leads", type=int, default=1000, help="Leads seeded; other objects in proportion")
    parser.add_argument("--faults", type=int, default=6, help="fault rules per cycle, at most (0: none)")
    parser.add_argument("--kill-rate", type=float, default=0.1, help="share of task attempts SIGKILLed")
    parser.add_argument("--activity-rate", type=float, default=2.0, help="org changes per second")
    parser.add_argument(
        "--bulk-threshold", type=int, default=100, help="every object's, to run the Bulk paths"
    )
    parser.add_argument("--workdir", type=Path, help="keep the services' data and the task logs here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return report(soak(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="sfsync-soak-") as tmp:
        return report(soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
