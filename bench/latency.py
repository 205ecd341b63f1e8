"""How long a change takes to reach the other side, in a running Airflow, with change events and with the
five-minute schedule alone.

For each mode, ``airflow standalone`` runs the project's DAGs on the demo's set-up (the local org seeded as
``make run`` seeds it, the embedded warehouse, the demo's connections and pool, ``salesforce_events`` as the
org's admin), with the registry's Lead ``events`` on or off. Once Lead has synced, ``--changes`` Leads are
changed in Salesforce (a REST update by another user) and as many in the warehouse (an editor's UPDATE), each
at a random moment of ``--window`` seconds. Each change's latency is from its commit to the moment its value
is read on the other side: the warehouse's row, or the org's store read directly (reading costs no API call).
Then, with nothing changing, the API calls the org counts over one five-minute cycle of all DAGs: events
must add none for idle objects.

    python bench/latency.py [--changes 50] [--window 300] [--modes events cron] [--activity 0]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml
from common import add_profile_option, org_api_calls, seed_org

from localorg.datadir import DB_FILE
from localorg.testing import RunningOrg, free_port, running_org
from sfsync import migrations
from sfsync.registry import DEFAULT_REGISTRY
from sfsync_dev.demo import airflow, airflow_environment, stop_group, wait_for_ui
from sfsync_dev.embedded import EmbeddedWarehouse

DAG_ID = "sf_sync__lead"
CYCLE_SECONDS = 300  # the schedule: every five minutes
#: How long after the last change a change may still arrive before it counts as lost: a cycle and a run.
DRAIN_SECONDS = CYCLE_SECONDS + 150
POLL_SECONDS = 0.25


@dataclass
class Change:
    side: str  # where it is made: "salesforce" or "warehouse"
    lead: str
    title: str
    due: float  # seconds into the window
    made_at: float | None = None
    arrived_at: float | None = None

    @property
    def latency(self) -> float | None:
        return None if self.arrived_at is None or self.made_at is None else self.arrived_at - self.made_at


def registry_file(path: Path, events: bool) -> Path:
    """The project's registry with Lead's ``events`` set as the mode wants."""
    document = yaml.safe_load(DEFAULT_REGISTRY.read_text())
    for entry in document["objects"]:
        if entry["sobject"] == "Lead":
            entry["events"] = events
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@contextmanager
def standalone(root: Path, org: RunningOrg, pg: EmbeddedWarehouse, events: bool) -> Iterator[None]:
    """``airflow standalone`` on its own home and port, with the demo's environment, until the block ends."""
    port = free_port()
    env = airflow_environment(root / "airflow", org.ca_file) | {
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "SFSYNC_REGISTRY": str(registry_file(root / f"objects-{port}.yaml", events)),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": org.airflow_conn_json("integration"),
        "AIRFLOW_CONN_SALESFORCE_EVENTS": org.airflow_conn_json("admin"),
        "AIRFLOW_CONN_MARKETING_WAREHOUSE": f"postgres://postgres@127.0.0.1:{pg.port}/warehouse",
    }
    (root / "airflow").mkdir(exist_ok=True)
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "salesforce_api", "4", "Concurrent Salesforce API calls")
    log = (root / f"standalone-{'events' if events else 'cron'}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if not wait_for_ui(process, f"http://localhost:{port}"):
            raise RuntimeError(f"airflow standalone ended; see {log.name}")
        _trigger_first_run(env)
        yield
    finally:
        stop_group(process)
        log.close()


def _trigger_first_run(env: dict[str, str]) -> None:
    """Start Lead's first sync now rather than at the next tick (once the DAG processor has parsed it)."""
    deadline = time.monotonic() + 180
    while True:
        try:
            airflow(env, "dags", "trigger", DAG_ID)
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def wait_for_lead_sync(warehouse_url: str, since: datetime, timeout: float = 600) -> None:
    """Until a Lead pull that started after ``since`` has merged."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT 1 FROM sfsync.sync_runs WHERE sobject = 'Lead' AND status = 'merged'"
                " AND started_at > %s",
                [since],
            ).fetchone()
            if row:
                return
            time.sleep(2)
    raise RuntimeError("Lead did not sync within 10 minutes")


def plan(warehouse_url: str, count: int, window: float, rng: random.Random) -> list[Change]:
    """``count`` changes a side to distinct Leads that may be changed (not converted), at random moments."""
    with psycopg.connect(warehouse_url) as conn:
        leads = [
            lead
            for (lead,) in conn.execute(
                "SELECT id FROM salesforce.lead WHERE NOT isconverted AND NOT isdeleted ORDER BY id"
            )
        ]
    chosen = rng.sample(leads, 2 * count)
    changes = [
        Change(side, lead, f"latency {uuid.uuid4().hex[:12]}", rng.uniform(0, window))
        for side, lead in zip(["salesforce"] * count + ["warehouse"] * count, chosen, strict=True)
    ]
    return sorted(changes, key=lambda change: change.due)


def measure(org: RunningOrg, warehouse_url: str, changes: list[Change], window: float) -> None:
    """Make each change when due and note when each arrived on the other side."""
    from simple_salesforce import Salesforce

    os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_file)
    sf = Salesforce(**org.salesforce_kwargs("admin"))  # another user: the sync skips only its own changes
    store = f"file:{org.data_dir / DB_FILE}?mode=ro"
    started = time.monotonic()
    with (
        psycopg.connect(warehouse_url, autocommit=True) as pg,
        closing(sqlite3.connect(store, uri=True)) as org_db,
    ):
        while time.monotonic() - started < window + DRAIN_SECONDS:
            now = time.monotonic() - started
            for change in changes:
                if change.made_at is None and change.due <= now:
                    if change.side == "salesforce":
                        sf.Lead.update(change.lead, {"Title": change.title})
                    else:
                        pg.execute(
                            "UPDATE salesforce.lead SET title = %s WHERE id = %s", [change.title, change.lead]
                        )
                    change.made_at = time.monotonic()
            waiting = [c for c in changes if c.made_at is not None and c.arrived_at is None]
            if not waiting and all(c.made_at is not None for c in changes):
                return
            _arrivals(pg, org_db, waiting)
            time.sleep(POLL_SECONDS)


def _arrivals(pg: psycopg.Connection, org_db: sqlite3.Connection, waiting: list[Change]) -> None:
    in_warehouse = {c.lead: c for c in waiting if c.side == "salesforce"}
    in_salesforce = {c.lead: c for c in waiting if c.side == "warehouse"}
    seen: list[tuple[Change, str | None]] = []
    if in_warehouse:
        rows = pg.execute("SELECT id, title FROM salesforce.lead WHERE id = ANY(%s)", [list(in_warehouse)])
        seen += [(in_warehouse[lead], title) for lead, title in rows]
    if in_salesforce:
        marks = ", ".join("?" * len(in_salesforce))
        rows = org_db.execute(
            f'SELECT "Id", "Title" FROM "Lead" WHERE "Id" IN ({marks})', list(in_salesforce)
        )
        seen += [(in_salesforce[lead], title) for lead, title in rows]
    now = time.monotonic()
    for change, title in seen:
        if title == change.title:
            change.arrived_at = now


def probe(org: RunningOrg, warehouse_url: str, rng: random.Random) -> str:
    """One change a side followed to the other (not counted), so the watchers are known to be up."""
    changes = plan(warehouse_url, 1, 0, rng)
    measure(org, warehouse_url, changes, 0)
    if any(change.latency is None for change in changes):
        raise RuntimeError("a first change did not reach the other side: are the watchers running?")
    return ", ".join(f"{change.side} {change.latency:.1f} s" for change in changes)


@contextmanager
def org_activity(org: RunningOrg, rate: float) -> Iterator[None]:
    """The org's own random changes (``localorg activity``, as in ``make run``) while the block runs; they
    may delete, merge or convert a Lead being measured, which then never arrives."""
    if not rate:
        yield
        return
    command = [sys.executable, "-m", "localorg", "activity", "--data", str(org.data_dir), "--rate", str(rate)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        stop_group(process)


def idle_calls(org: RunningOrg) -> int:
    """The API calls the org counts over one five-minute cycle of every DAG, nothing changing: from after
    one tick's runs (90 s past it) to after the next's."""
    time.sleep(CYCLE_SECONDS - time.time() % CYCLE_SECONDS + 90)
    before = org_api_calls(org)
    time.sleep(CYCLE_SECONDS)
    return org_api_calls(org) - before


def percentile(ordered: list[float], share: float) -> str:
    """The value ``share`` of the way up ``ordered`` (nearest rank), in seconds or "lost"."""
    value = ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]
    return f"{value:6.1f} s" if math.isfinite(value) else "  lost  "


def report(mode: str, changes: list[Change], calls: int | None) -> None:
    """Percentiles over every change made: one that never arrived counts as slower than any that did."""
    for side, direction in (
        ("salesforce", "Salesforce to warehouse"),
        ("warehouse", "warehouse to Salesforce"),
    ):
        made = [c for c in changes if c.side == side and c.made_at is not None]
        latencies = sorted(math.inf if c.latency is None else c.latency for c in made)
        if not latencies:
            continue
        at = functools.partial(percentile, latencies)
        lost = sum(not math.isfinite(v) for v in latencies)
        print(
            f"  {mode:6s} {direction}: p50 {at(0.5)}  p95 {at(0.95)}  max {at(1.0)}"
            f"  ({len(latencies)} changes, {lost} not arrived)"
        )
    if calls is not None:
        print(f"  {mode:6s} API calls the org counted in an idle five-minute cycle of every DAG: {calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50, help="changes made on each side")
    parser.add_argument("--window", type=float, default=300, help="seconds over which changes are made")
    parser.add_argument("--modes", nargs="+", choices=["events", "cron"], default=["events", "cron"])
    parser.add_argument("--leads", type=int, default=2000, help="Leads seeded (the demo's 2,000)")
    parser.add_argument(
        "--idle", action=argparse.BooleanOptionalAction, default=True, help="measure idle calls"
    )
    parser.add_argument(
        "--activity", type=float, default=0, help="the org's own changes a second (demo: 0.5)"
    )
    parser.add_argument("--seed", type=int, default=16)
    add_profile_option(parser)
    parser.set_defaults(profile="instant")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: list[tuple[str, list[Change], int | None]] = []
    with tempfile.TemporaryDirectory(prefix="sfsync-latency-") as scratch:
        root = Path(scratch)
        pg = EmbeddedWarehouse(root / "pg", free_port()).start()
        try:
            with running_org(root / "org", profile=args.profile) as org:
                seed_org(org.data_dir, args.leads, args.seed)
                with psycopg.connect(pg.url(), autocommit=True) as conn:
                    migrations.migrate(conn)
                for mode in args.modes:
                    print(f"--- {mode}: starting airflow standalone ---", flush=True)
                    since = datetime.now(UTC)
                    with standalone(root, org, pg, events=mode == "events"):
                        wait_for_lead_sync(pg.url(), since)
                        if mode == "events":
                            first = probe(org, pg.url(), rng)
                            print(f"    watchers up; first changes took {first}", flush=True)
                        changes = plan(pg.url(), args.changes, args.window, rng)
                        print(f"    making {len(changes)} changes over {args.window:.0f} s", flush=True)
                        with org_activity(org, args.activity):
                            measure(org, pg.url(), changes, args.window)
                        calls = idle_calls(org) if args.idle else None
                    results.append((mode, changes, calls))
                    report(mode, changes, calls)
        finally:
            pg.stop()
    print(f"--- change-to-other-side latency, {args.changes} changes a side over {args.window:.0f} s ---")
    for mode, changes, calls in results:
        report(mode, changes, calls)


if __name__ == "__main__":
    main()
