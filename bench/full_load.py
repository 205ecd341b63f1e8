"""The full load of a large org: Leads (30 fields) from a seeded local org into a fresh embedded warehouse.

For each size: the full load as the DAG runs it (plan, every CreatedDate slice through Bulk API 2.0 into
COPY, its mapped slices as many at a time as the salesforce_api pool allows, hand-over): wall time, rows/s,
API calls, peak memory of this process (the org and Postgres run in their own), and the ratio to the
baseline measured in the same run, a raw COPY of the same rows (from a CSV file) into an empty table of the
same columns. Then the same load from scratch one slice after another, with where its time goes (login,
describe, the Bulk jobs until complete, their CSV streamed straight into the table, or into the staging
COPY and the merge when a slice meets a record already there, and the rest: planning queries,
bookkeeping, DDL, connections). The last lines show how time grows with size (linear: the per-row time
stays flat).

Prints figures, asserts nothing. Usage: python bench/full_load.py [--sizes 100000,1000000] [--slice-days 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

# Loaded before any timing, as they are in an Airflow worker: the sync imports them lazily.
from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook  # noqa: F401
from common import LEAD_FIELDS, peak_rss_mb, phases, print_phases, seeded_stack

from sfsync import full_load, load
from sfsync.context import run_step
from sfsync.salesforce import Salesforce

POOL_SLOTS = 4  # the salesforce_api pool of airflow_settings.yaml
PHASES = {
    "login": (Salesforce, "__init__"),
    "describe": (Salesforce, "describe"),
    "Bulk jobs until complete": (Salesforce, "bulk_query"),
    "download + staging COPY": (load, "copy_csv"),
    "merge": (load, "merge_staged"),
    "download + table COPY": (load, "copy_new"),
}


def raw_copy_seconds(url: str, scratch: Path) -> float:
    """COPY the loaded rows, written to a CSV file first, into an empty table of the same columns."""
    names = ", ".join(f'"{f.lower()}"' for f in LEAD_FIELDS)
    csv_file = scratch / "lead.csv"
    with psycopg.connect(url, autocommit=True) as conn:
        with (
            csv_file.open("wb") as out,
            conn.cursor().copy(
                f"COPY (SELECT {names} FROM salesforce.lead) TO STDOUT WITH (FORMAT csv)"
            ) as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        conn.execute(f"CREATE TABLE raw_copy AS SELECT {names} FROM salesforce.lead WITH NO DATA")
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY raw_copy ({names}) FROM STDIN WITH (FORMAT csv)") as copy,
        ):
            with csv_file.open("rb") as data:
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
        elapsed = time.perf_counter() - started
    csv_file.unlink()
    return elapsed


def load(run_id: str, slice_days: float, slices_at_once: int) -> tuple[int, int, int]:
    """A whole full load of Lead, ``slices_at_once`` slices copied at a time; rows, slices, API calls."""
    pieces = run_step(full_load.plan, run_id, ["Lead"], slice_days, None)
    with ThreadPoolExecutor(slices_at_once) as pool:
        copied = pool.map(lambda p: run_step(full_load.copy_slice, run_id, p), pieces)
        calls = sum(c["api_calls"] for c in copied)
    rows = run_step(full_load.finish, run_id)["handed_over"]["Lead"]
    return rows, len(pieces), calls


def run(size: int, slice_days: float, root: Path) -> tuple[int, float, float]:
    """The load as the DAG runs it, then again from scratch slice by slice (to see where time goes);
    rows and the seconds of each."""
    with seeded_stack(root, int(size * 1.25), seed=3) as (_org, pg):
        started = time.perf_counter()
        rows, slices, calls = load(f"bench__{size}__pool", slice_days, POOL_SLOTS)
        pooled, rss = time.perf_counter() - started, peak_rss_mb()
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("DROP TABLE salesforce.lead")
            conn.execute("DELETE FROM sfsync.sync_state")
        with phases(PHASES) as spent:
            load(f"bench__{size}", slice_days, 1)
        seconds = spent["total"]
        baseline = raw_copy_seconds(pg.url(), root)
        print(
            f"  as the DAG runs it, {POOL_SLOTS} slices at a time (the salesforce_api pool): {rows:,} rows,"
            f" {slices} slices, {pooled:.1f} s, {rows / pooled:,.0f} rows/s"
        )
        print(f"  raw COPY of the same rows: {baseline:.1f} s ({rows / baseline:,.0f} rows/s)")
        print(f"  ratio to raw COPY: {pooled / baseline:.1f}x; API calls: {calls}; peak RSS: {rss:.0f} MB")
        print(
            f"  slice by slice: {seconds:.1f} s, {rows / seconds:,.0f} rows/s,"
            f" {seconds / baseline:.1f}x raw COPY; where the time goes:"
        )
        print_phases(spent, indent="    ")
        return rows, pooled, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--slice-days", type=float, default=30)
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="sfsync-bench-") as tmp:
            results.append(run(size, args.slice_days, Path(tmp)))
    (small_rows, *small), (big_rows, *big) = results[0], results[-1]
    if len(results) > 1:
        for label, small_s, big_s in zip(("as the DAG runs it", "slice by slice"), small, big, strict=True):
            print(
                f"growth, {label}: {big_rows / small_rows:.1f}x the rows took {big_s / small_s:.1f}x the time"
                f" ({small_s / small_rows * 1e6:.1f} vs {big_s / big_rows * 1e6:.1f} us per row)"
            )


if __name__ == "__main__":
    main()
