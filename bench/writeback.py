"""Warehouse to Salesforce: what a cycle with 10,000 changed Leads costs.

A seeded local org is pulled into a fresh embedded warehouse; then 10,000 Lead rows are edited in the
warehouse (three fields each) and pushed by the sync's own ``writeback.push``: once above the registry's
``bulk_threshold`` (one Bulk API 2.0 ingest job) and once below it (sObject Collections, 200 records a
call). Prints API calls, wall time and records/s for each path, and the org's own time for the same
Bulk update sent directly with simple-salesforce (the baseline: the part of the wall time that is not the
sync's), under each latency profile of the local org (instant, then realistic: see bench/common.py).
Asserts nothing. Usage: python bench/writeback.py [--rows 10000] [--profile instant|realistic|both]
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
from common import add_profile_option, peak_rss_mb, seeded_stack, under_profiles

from sfsync import writeback
from sfsync.context import run_step
from sfsync.defaults import SALESFORCE_CONN_ID
from sfsync.extract import extract
from sfsync.merge import merge
from sfsync.registry import load_registry
from sfsync.salesforce import Salesforce


def edit(url: str, rows: int, label: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE salesforce.lead SET title = %s || _sfsync_row_id, rating = 'Warm', numberofemployees = 42"
            " WHERE _sfsync_row_id IN (SELECT _sfsync_row_id FROM salesforce.lead"
            " WHERE NOT isdeleted AND NOT isconverted ORDER BY _sfsync_row_id LIMIT %s)",
            [label, rows],
        )


def push(run_id: str, bulk_threshold: int) -> tuple[dict, float]:
    registry = load_registry()
    entry = registry.get("Lead").model_copy(update={"bulk_threshold": bulk_threshold})
    started = time.perf_counter()
    pushed = run_step(writeback.push, run_id, entry, settings=registry.settings)
    return pushed, time.perf_counter() - started


def org_baseline(rows: int) -> float:
    """Seconds for the org to take the same Bulk update sent directly (no warehouse, no bookkeeping)."""
    sf = Salesforce(SALESFORCE_CONN_ID)
    ids = sf.client.query_all(f"SELECT Id FROM Lead WHERE IsConverted = false LIMIT {rows}")["records"]
    records = [{"Id": r["Id"], "Title": "Baseline", "Rating": "Cold", "NumberOfEmployees": 7} for r in ids]
    started = time.perf_counter()
    sf.client.bulk2.Lead.update(records=records, wait=0.2)
    return time.perf_counter() - started


def measure(rows: int, profile: str) -> None:
    """Both pushes and the baseline, on a fresh stack whose org runs under ``profile``."""
    with tempfile.TemporaryDirectory(prefix="sfsync-bench-") as tmp:
        with seeded_stack(Path(tmp), int(rows * 1.4), seed=2, profile=profile) as (_org, pg):
            registry = load_registry()
            entry = registry.get("Lead")
            extracted = run_step(extract, "pull", entry, settings=registry.settings)
            run_step(merge, "pull", entry, extracted, settings=registry.settings)

            for path, threshold in (("Bulk API 2.0", entry.bulk_threshold), ("sObject Collections", 10**9)):
                edit(pg.url(), rows, path)
                rss_before = peak_rss_mb()
                pushed, seconds = push(f"push {path}", threshold)
                written = pushed["updated"]
                print(f"{written:,} changed Leads (3 fields each) through {path}:")
                print(f"  API calls:   {pushed['api_calls']} ({pushed['failed']} failed records)")
                print(f"  wall time:   {seconds:.2f} s, {written / seconds:,.0f} records/s")
                print(f"  peak RSS:    {peak_rss_mb():.0f} MB ({peak_rss_mb() - rss_before:+.0f} MB)")
            baseline = org_baseline(rows)
            print(f"org baseline: the same Bulk update sent directly: {baseline:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    add_profile_option(parser)
    args = parser.parse_args()
    under_profiles(args, lambda profile: measure(args.rows, profile))


if __name__ == "__main__":
    main()
