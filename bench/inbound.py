"""Salesforce to warehouse: how fast a large delta lands, and what an idle cycle costs.

1. A 100,000-record delta of a 30-field object (Lead) from a seeded local org into a fresh embedded
   warehouse, through the sync's own extract and merge (Bulk API 2.0 above the threshold): records/s, API
   calls, peak memory of this process (the org is seeded and served by other processes), and where the
   time goes (login, describe with the size probe, the Bulk job until it is complete, its CSV streamed
   into the staging COPY and the merge, or, as here where the table holds no Id yet, straight into the
   table with the deleted records' stamp, and the rest: bookkeeping, DDL, connections).
2. The warehouse side alone, on the same Bulk CSV pages (downloaded first, timed on their own): staged
   with COPY and merged into an empty table, and COPYed straight into it, against the baseline measured
   in the same run, a raw COPY of the same pages into an empty table (no index, trigger or default).
3. An idle cycle over every registry object (nothing changed since the last run): API calls per object
   and wall time.

Prints figures under each latency profile of the local org (instant, then realistic: see bench/common.py),
asserts nothing. Usage: python bench/inbound.py [--rows 100000] [--profile instant|realistic|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psycopg

# Loaded before any timing, as they are in an Airflow worker: the sync imports them lazily.
from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook  # noqa: F401
from common import (
    LEAD_FIELDS,
    add_profile_option,
    peak_rss_mb,
    phases,
    print_phases,
    seeded_stack,
    under_profiles,
)
from psycopg import sql

from sfsync import columns, load, soql, tables
from sfsync.context import run_step
from sfsync.defaults import SALESFORCE_CONN_ID
from sfsync.extract import extract
from sfsync.merge import merge
from sfsync.registry import load_registry
from sfsync.salesforce import Salesforce


def sync(sobject: str, run_id: str) -> tuple[dict, float]:
    registry = load_registry()
    entry = registry.get(sobject)
    started = time.perf_counter()
    extracted = run_step(extract, run_id, entry, settings=registry.settings)
    merged = run_step(merge, run_id, entry, extracted, settings=registry.settings)
    return merged, time.perf_counter() - started


def timed_sync(sobject: str, run_id: str) -> tuple[dict, dict[str, float]]:
    """``sync`` with the seconds of each phase."""
    with phases(
        {
            "login": (Salesforce, "__init__"),
            "describe + size probe": (Salesforce, "describe_and_query"),
            "Bulk job until complete": (Salesforce, "bulk_query"),
            "download + staging COPY": (load, "copy_csv"),
            "merge": (load, "merge_staged"),
            "download + table COPY": (load, "copy_new"),
        }
    ) as seconds:
        merged, _ = sync(sobject, run_id)
    return merged, seconds


def warehouse_side(url: str) -> tuple[float, float, float, float, int]:
    """Seconds to stage + merge the Lead Bulk CSV pages into an empty table, to COPY them straight into it
    (the first-load fast path), to raw-COPY them, and to download them."""
    sf = Salesforce(SALESFORCE_CONN_ID)
    lead_columns = columns.synced(sf.describe("Lead"), LEAD_FIELDS)
    names = [c.name for c in lead_columns]
    query = soql.delta_query("Lead", [c.field for c in lead_columns], "SystemModstamp", None, sf.now())
    results = sf.bulk_query(query)
    started = time.perf_counter()
    pages = [b"".join(page) for page in results]
    download = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute("SET search_path TO bench")
        conn.execute("CREATE TABLE raw_copy AS SELECT * FROM salesforce.lead WITH NO DATA")
        copy = sql.SQL(
            "COPY raw_copy ({}) FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL ({}))"
        ).format(*[sql.SQL(", ").join(map(sql.Identifier, names))] * 2)
        raw_rows, started = 0, time.perf_counter()
        for page in pages:
            with conn.cursor() as cursor:
                with cursor.copy(copy) as writer:
                    writer.write(page)
                raw_rows += cursor.rowcount
        raw = time.perf_counter() - started
        conn.execute("ALTER TABLE salesforce.lead RENAME TO lead_synced")
        tables.ensure_table(conn, "lead", lead_columns, bidirectional=True)
        started = time.perf_counter()
        load.create_staging(conn, "lead", "stage__bench", names)
        load.copy_csv(conn, "stage__bench", names, ([page] for page in pages))
        with conn.transaction():
            load.merge_staged(conn, "lead", "stage__bench", names)
        ours = time.perf_counter() - started
        conn.execute("DROP TABLE salesforce.lead")
        tables.ensure_table(conn, "lead", lead_columns, bidirectional=True)
        started = time.perf_counter()
        with conn.transaction():
            load.copy_new(conn, "lead", names, ([page] for page in pages), exclusive=True)
        fast = time.perf_counter() - started
    return ours, fast, raw, download, raw_rows


def measure(size: int, profile: str) -> None:
    """The three figures above, on a fresh stack whose org runs under ``profile``."""
    with tempfile.TemporaryDirectory(prefix="sfsync-bench-") as tmp:
        with seeded_stack(Path(tmp), int(size * 1.25), seed=1, profile=profile) as (_org, pg):
            rss_before = peak_rss_mb()

            merged, spent = timed_sync("Lead", "bench__delta")
            seconds, rows = spent["total"], merged["new"] + merged["deleted"]
            rss = peak_rss_mb()
            print(f"delta of {rows:,} Lead records ({len(LEAD_FIELDS)} fields), through the Bulk API 2.0:")
            print(f"  sync (extract + merge):   {seconds:.2f} s, {rows / seconds:,.0f} records/s")
            print(f"  API calls:                {merged['api_calls']}")
            print(f"  peak RSS:                 {rss:.0f} MB ({rss - rss_before:+.0f} MB over the imports)")
            print("  where the time goes:")
            print_phases(spent, indent="    ")

            ours, fast, raw, download, copied = warehouse_side(pg.url())
            print(f"warehouse side, same {copied:,} rows, into an empty table:")
            for label, spent_here in (("stage with COPY + merge:", ours), ("COPY into the table:", fast)):
                rate, ratio = copied / spent_here, spent_here / raw
                print(f"  {label:26s}{spent_here:.2f} s, {rate:,.0f} records/s ({ratio:.1f}x raw COPY)")
            print(f"  raw COPY (baseline):      {raw:.2f} s, {copied / raw:,.0f} records/s")
            print(f"  end to end (the sync):    {seconds / raw:.1f}x raw COPY")
            print(f"  download alone:           {download:.2f} s (streamed into the COPY in the sync)")

            objects = [e.sobject for e in load_registry().enabled()]
            for sobject in objects:
                sync(sobject, "bench__initial")
            started = time.perf_counter()
            calls = {sobject: sync(sobject, "bench__idle")[0]["api_calls"] for sobject in objects}
            elapsed = time.perf_counter() - started
            each = elapsed / len(objects)
            print(f"idle cycle, {len(objects)} objects: {elapsed:.2f} s ({each:.2f} s each)")
            print("  API calls per object: " + ", ".join(f"{s} {c}" for s, c in calls.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    add_profile_option(parser)
    args = parser.parse_args()
    under_profiles(args, lambda profile: measure(args.rows, profile))


if __name__ == "__main__":
    main()
