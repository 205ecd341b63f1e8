"""What the benchmarks share: the 30-field Lead, seeding, and pointing the sync at an org and a warehouse.

The org runs under a latency profile (``localorg.profile``): ``seeded_stack(..., profile="realistic")``,
else the one ``SFSYNC_BENCH_PROFILE`` names, else ``instant``. Scripts with ``--profile`` (see
``add_profile_option``) print their figures under each profile it names, both by default.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from localorg.datadir import DB_FILE
from localorg.profile import PROFILES, Profile
from localorg.seed import RATIOS
from localorg.testing import RunningOrg, free_port, running_org
from sfsync import migrations
from sfsync.registry import DEFAULT_REGISTRY, load_registry
from sfsync_dev.embedded import EmbeddedWarehouse

#: 30 stored (not formula) Lead fields the integration user can see.
LEAD_FIELDS = (
    "Id IsDeleted Salutation FirstName LastName Title Company Email Phone MobilePhone Website City State"
    " PostalCode Country Status LeadSource Industry Rating AnnualRevenue NumberOfEmployees HasOptedOutOfEmail"
    " DoNotCall OwnerId CreatedDate CreatedById LastModifiedDate LastModifiedById SystemModstamp IsConverted"
).split()


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_sqlite_rate(data_dir: Path) -> float:
    """Records/s of a plain SQLite read of the 30 Lead fields from an org's store: the baseline."""
    columns = ", ".join(f'"{f}"' for f in LEAD_FIELDS)
    with sqlite3.connect(data_dir / "org.sqlite") as conn:
        started = time.perf_counter()
        rows = len(conn.execute(f'SELECT {columns} FROM "Lead" ORDER BY rowid').fetchall())
        return rows / (time.perf_counter() - started)


def org_api_calls(org: RunningOrg) -> int:
    """The API requests the org has counted (its usage store, read directly: reading costs no call)."""
    with closing(sqlite3.connect(f"file:{org.data_dir / DB_FILE}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COALESCE(SUM(used), 0) FROM _api_requests").fetchone()[0])


def seed_leads(data_dir: Path, count: int, seed: int) -> None:
    """``count`` Leads and nothing else, through ``python -m localorg seed`` (its memory is not ours)."""
    others = ",".join(f"{name}=0" for name in RATIOS)
    command = [
        "seed",
        "--data",
        str(data_dir),
        "--seed",
        str(seed),
        "--count",
        str(count),
        "--objects",
        others,
    ]
    subprocess.run([sys.executable, "-m", "localorg", *command], check=True, capture_output=True)


def seed_org(data_dir: Path, count: int, seed: int) -> None:
    """``count`` Leads and every other object in the seeder's proportions (Contacts, Campaigns, ...)."""
    command = ["seed", "--data", str(data_dir), "--seed", str(seed), "--count", str(count)]
    subprocess.run([sys.executable, "-m", "localorg", *command], check=True, capture_output=True)


def add_profile_option(parser: argparse.ArgumentParser) -> None:
    """``--profile instant|realistic|both`` (default both): the org's latency profiles to measure under."""
    parser.add_argument("--profile", choices=[*PROFILES, "both"], default="both", help="the org's latency")


def under_profiles(args: argparse.Namespace, run: Callable[[str], None]) -> None:
    """``run(profile)`` under each profile ``--profile`` names, each after a heading naming it."""
    for name in PROFILES if args.profile == "both" else [args.profile]:
        print(f"--- local org profile {PROFILES[name]} ---", flush=True)
        run(name)


@contextmanager
def seeded_stack(
    root: Path, leads: int, seed: int, every_object: bool = False, profile: str | Profile | None = None
) -> Iterator[tuple[RunningOrg, EmbeddedWarehouse]]:
    """A local org seeded with ``leads`` Leads (a fifth of them owned by a user the integration user cannot
    see), and with ``every_object`` the other objects in proportion, and a migrated embedded warehouse
    under ``root``, with the sync's environment pointing at both. The org runs under ``profile`` (a name
    or a ``localorg.profile.Profile``), by default ``SFSYNC_BENCH_PROFILE``'s, else ``instant``."""
    pg = EmbeddedWarehouse(root / "pg", free_port()).start()
    latency = profile or os.environ.get("SFSYNC_BENCH_PROFILE", "instant")
    try:
        with running_org(root / "org", profile=latency) as org:
            started = time.perf_counter()
            (seed_org if every_object else seed_leads)(org.data_dir, leads, seed)
            what = "Leads and the other objects" if every_object else "Leads"
            print(f"seeded {leads:,} {what} in {time.perf_counter() - started:.1f} s")
            os.environ |= sync_environment(org, pg, root)
            with psycopg.connect(pg.url(), autocommit=True) as conn:
                migrations.migrate(conn)
            yield org, pg
    finally:
        pg.stop()


def sync_environment(org: RunningOrg, pg: EmbeddedWarehouse, scratch: Path) -> dict[str, str]:
    """The sync's environment: the org's integration user, the warehouse, a registry with a 30-field Lead."""
    lines = ["objects:"]
    for entry in load_registry(DEFAULT_REGISTRY).objects:
        fields = f", fields: [{', '.join(LEAD_FIELDS)}]" if entry.sobject == "Lead" else ""
        lines.append(f"  - {{sobject: {entry.sobject}, direction: {entry.direction}{fields}}}")
    registry = scratch / "objects.yaml"
    registry.write_text("\n".join(lines) + "\n")
    return {
        "SFSYNC_REGISTRY": str(registry),
        "REQUESTS_CA_BUNDLE": str(org.ca_file),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": org.airflow_conn_json("integration"),
        "AIRFLOW_CONN_MARKETING_WAREHOUSE": f"postgres://postgres@127.0.0.1:{pg.port}/warehouse",
    }


@contextmanager
def phases(targets: dict[str, tuple[Any, str]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each named ``(owner, attribute)`` function while the block runs, and ``"total"``:
    where a sync's time goes (the functions must not call one another)."""
    seconds: dict[str, float] = defaultdict(float)
    originals = {phase: getattr(owner, name) for phase, (owner, name) in targets.items()}

    def timed(phase: str, function: Any) -> Any:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - started

        return run

    for phase, (owner, name) in targets.items():
        setattr(owner, name, timed(phase, originals[phase]))
    started = time.perf_counter()
    try:
        yield seconds
    finally:
        seconds["total"] = time.perf_counter() - started
        for phase, (owner, name) in targets.items():
            setattr(owner, name, originals[phase])


def print_phases(seconds: dict[str, float], indent: str = "  ") -> None:
    """One line per phase with its share of the total; what no phase covers is shown as the rest."""
    total = seconds["total"]
    rest = total - sum(v for k, v in seconds.items() if k != "total")
    for phase, value in [*((k, v) for k, v in seconds.items() if k != "total"), ("rest", rest)]:
        print(f"{indent}{phase + ':':26s}{value:6.2f} s  {value / total:4.0%}")
