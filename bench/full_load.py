"""The full load of a large org: Leads (30 fields), or every registry object, from a seeded local org into a
fresh embedded warehouse.

For each size:

1. The full load as the DAG runs it (plan, every slice through Bulk API 2.0 into COPY, its mapped slices
   as many at a time as the salesforce_api pool allows, hand-over): wall time, rows/s, peak memory of
   this process (the org and Postgres run in their own), and its API calls as the org counted them (its
   usage store, read before and after) beside the sync's own meter (the plan's and the slices').
2. The same load from scratch, one slice after another, split into what the org does and what the sync
   does with what it gets:
   (a) the org's export: the load's Bulk jobs until complete and the download of their CSV pages, which
       are recorded to files exactly as the sync's client receives them (the load's COPY left out);
   (b) the sync given that CSV: the load's slices (``full_load.copy_slice``) again into fresh tables,
       their Bulk results replayed from the files through the client's own pages and NUL filtering, so
       the sync's real loading code runs (DDL, straight COPY, bookkeeping); then once more over the rows
       they copied, which takes the staging COPY and merge path (a slice run again);
   (c) the baseline: a raw COPY of the same CSV pages into tables of the same columns (no key, trigger or
       default). (b)/(c) is the ratio the sync owns: its target is 2x.
   Then the API calls of each object (counted by the org, and by the sync's meter) and per million records.
The last lines show how time grows with size (linear: the per-row time stays flat).

Prints figures under each latency profile of the local org (instant, then realistic: see bench/common.py),
asserts nothing. Usage: python bench/full_load.py [--sizes 100000,1000000] [--job-records N]
[--objects lead|all] [--profile instant|realistic|both] (``all``: every registry object, seeded in the
seeder's proportions to the Leads)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from unittest.mock import patch

import psycopg

# Loaded before any timing, as they are in an Airflow worker: the sync imports them lazily.
from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook  # noqa: F401
from common import (
    add_profile_option,
    org_api_calls,
    peak_rss_mb,
    phases,
    print_phases,
    seeded_stack,
    under_profiles,
)
from psycopg import sql

from localorg.testing import RunningOrg
from sfsync import full_load, load, salesforce, tables, warehouse
from sfsync.context import Context, opened
from sfsync.defaults import OBJECT_SCHEMA, SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID
from sfsync.registry import load_registry
from sfsync.salesforce import BulkPage, BulkResults, CallMeter, Salesforce

T = TypeVar("T")
POOL_SLOTS = 4  # the salesforce_api pool of airflow_settings.yaml
EXPORT = {
    "Bulk jobs until complete": (Salesforce, "bulk_query"),
    "download of the CSV pages": (load, "copy_or_merge"),  # the recording's: see Recording.download
}
LOAD = {
    "table DDL": (tables, "prepare_object_table"),
    "table COPY": (load, "copy_new"),
    "staging COPY": (load, "copy_csv"),
    "merge": (load, "merge_staged"),
}


def metered(step: Callable[..., T], run_id: str, *args: Any) -> tuple[T, int]:
    """``step(context, *args)`` as ``run_step`` runs it, and the API calls of the step's own meter."""
    with opened(run_id, load_registry().settings) as context:
        return step(context, *args), context.calls


def load_all(run_id: str, objects: list[str], job_records: int | None) -> tuple[dict[str, int], int, int]:
    """A whole full load, ``POOL_SLOTS`` slices copied at a time; rows per object, slices, metered calls."""
    pieces, calls = metered(full_load.plan, run_id, objects, None, job_records)
    with ThreadPoolExecutor(POOL_SLOTS) as pool:
        copied = list(pool.map(lambda p: metered(full_load.copy_slice, run_id, p)[0], pieces))
    rows = metered(full_load.finish, run_id)[0]["handed_over"]
    return rows, len(pieces), calls + sum(c["api_calls"] for c in copied)


@dataclass
class Recording:
    """A full load's Bulk result pages, written to files as the sync's client receives them (before its
    NUL filtering), by their job's query; the load runs one slice at a time, with no COPY."""

    scratch: Path
    pages: dict[str, list[tuple[int, Path]]] = field(default_factory=lambda: defaultdict(list))
    columns: dict[str, list[str]] = field(default_factory=dict)  # the columns COPY gets, by table
    files: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))  # by table
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by object
    query: str = ""

    @contextmanager
    def recording(self) -> Iterator[None]:
        bulk_query, without_nul = Salesforce.bulk_query, salesforce._without_nul

        def query(sf: Salesforce, soql: str, **kwargs: Any) -> BulkResults:
            self.query = soql
            return bulk_query(sf, soql, **kwargs)

        def tee(response: Any) -> Iterator[bytes]:
            path = self.scratch / f"page-{sum(map(len, self.pages.values()))}.csv"
            self.pages[self.query].append((int(response.headers["Sforce-NumberOfRecords"]), path))

            def chunks(size: int) -> Iterator[bytes]:
                with path.open("wb") as out:
                    for chunk in response.iter_content(size):
                        out.write(chunk)
                        yield chunk

            return without_nul(SimpleNamespace(iter_content=chunks))

        self.scratch.mkdir()
        with (
            patch.object(Salesforce, "bulk_query", query),
            patch.object(salesforce, "_without_nul", tee),
            patch.object(load, "copy_or_merge", self.download),
        ):
            yield

    def download(
        self, conn: psycopg.Connection, entry: Any, _key: str, names: list[str], read: Callable, *_: Any
    ) -> dict[str, int]:
        """In place of ``load.copy_or_merge``: read the pages (the tee records them), and load nothing."""
        rows = 0
        for page in read():
            for _chunk in page:
                pass
            rows += page.records
        self.columns[entry.table], self.rows[entry.sobject] = names, self.rows[entry.sobject] + rows
        self.files[entry.table] += [path for _, path in self.pages[self.query]]
        return {"new": rows}


class Played:
    """A recorded page in place of the response it came in (the client reads only ``iter_content``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def iter_content(self, size: int) -> Iterator[bytes]:
        with self.path.open("rb") as data:
            while chunk := data.read(size):
                yield chunk


class Replayed:
    """The org as a full load's slice sees it, from a recording: the describes, and each Bulk query's
    results (``BulkResults``), its pages read from their files through the client's NUL filtering."""

    def __init__(self, describes: dict[str, dict[str, Any]], recording: Recording) -> None:
        self.describes, self.pages, self.meter = describes, recording.pages, CallMeter()

    def describe(self, sobject: str) -> dict[str, Any]:
        return self.describes[sobject]

    def bulk_query(self, soql: str, page_records: int | None = None) -> BulkResults:
        records = sum(n for n, _ in self.pages[soql])
        return BulkResults(self, soql, page_records, records)  # type: ignore[arg-type]

    def _bulk_pages(self, job_id: str, _page_records: int | None) -> Iterator[BulkPage]:
        for records, path in self.pages[job_id]:
            yield BulkPage(records, salesforce._without_nul(Played(path)))  # type: ignore[arg-type]


def export(
    run_id: str, objects: list[str], job_records: int | None, org: RunningOrg
) -> tuple[list[dict[str, str]], dict[str, tuple[int, int]]]:
    """(a): the load object by object, slice by slice, recording its pages; its slices, and per object the
    API calls counted by the org and by the sync's meter."""
    pieces, calls = [], {}
    for sobject in objects:
        before = org_api_calls(org)
        planned, metered_calls = metered(full_load.plan, run_id, [sobject], None, job_records)
        for piece in (p for p in planned if p["sobject"] == sobject):
            metered_calls += metered(full_load.copy_slice, run_id, piece)[0]["api_calls"]
            pieces.append(piece)
        calls[sobject] = (org_api_calls(org) - before, metered_calls)
    return pieces, calls


def replay(run_id: str, pieces: list[dict[str, str]], org: Replayed) -> None:
    """(b): the slices copied again, their Bulk results replayed, each object's table prepared first from
    its recorded describe (as the plan prepares it)."""
    registry = load_registry()
    with warehouse.connect(WAREHOUSE_CONN_ID) as conn:
        context = Context(run_id, registry.settings, conn, SALESFORCE_CONN_ID, lambda: org)
        for sobject in dict.fromkeys(piece["sobject"] for piece in pieces):
            tables.prepare_object_table(conn, registry.get(sobject), org.describe(sobject))
        for piece in pieces:
            full_load.copy_slice(context, piece)  # type: ignore[arg-type]


def settle(url: str, fresh: Sequence[str] = ()) -> None:
    """A checkpoint, so that no measure pays for writing out the pages the one before it changed; first,
    with ``fresh`` tables, those dropped (for the next load to create them) and no hand-over watermark."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in fresh:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(OBJECT_SCHEMA, table)))
        if fresh:
            conn.execute("DELETE FROM sfsync.sync_state")
        conn.execute("CHECKPOINT")


def raw_copy_seconds(url: str, recording: Recording) -> float:
    """(c): COPY the recorded pages into empty tables of the columns the sync copies (no key, trigger or
    default), as the sync's COPY reads them (header, empty values as NULL)."""
    elapsed = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA raw")
        for table, names in recording.columns.items():
            target, columns = sql.Identifier("raw", table), sql.SQL(", ").join(map(sql.Identifier, names))
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                    target, columns, sql.Identifier(OBJECT_SCHEMA, table)
                )
            )
            copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL ({}))").format(
                target, columns, columns
            )
            started = time.perf_counter()
            for path in recording.files[table]:
                with conn.cursor().copy(copy) as writer, path.open("rb") as data:
                    while chunk := data.read(1 << 20):
                        writer.write(chunk)
            elapsed += time.perf_counter() - started
    return elapsed


def run(
    size: int, job_records: int | None, every_object: bool, root: Path, profile: str
) -> tuple[int, float, float]:
    """Both loads of one size (see the module docstring); rows, and the seconds of the load as the DAG runs
    it and of the sync's part of it."""
    with seeded_stack(root, int(size * 1.25), 3, every_object, profile) as (org, pg):
        entries = list(load_registry().enabled()) if every_object else [load_registry().get("Lead")]
        objects, table_names = [e.sobject for e in entries], [e.table for e in entries]

        settle(pg.url())
        before, started = org_api_calls(org), time.perf_counter()
        handed, slices, metered_calls = load_all(f"bench__{size}__pool", objects, job_records)
        pooled, rss, counted = time.perf_counter() - started, peak_rss_mb(), org_api_calls(org) - before
        rows = sum(handed.values())
        print(
            f"  as the DAG runs it, {POOL_SLOTS} slices at a time (the salesforce_api pool): {rows:,} rows"
            f" of {len(objects)} objects, {slices} slices, {pooled:.1f} s, {rows / pooled:,.0f} rows/s;"
            f" peak RSS {rss:.0f} MB"
        )
        print(f"  API calls: {counted} counted by the org, {metered_calls} by the sync's meter")

        settle(pg.url(), table_names)
        recording = Recording(root / "pages")
        with recording.recording(), phases(EXPORT) as exported:
            pieces, calls = export(f"bench__{size}__export", objects, job_records, org)
        org_seconds = exported["Bulk jobs until complete"] + exported["download of the CSV pages"]

        sf = Salesforce()
        replayed = Replayed({o: sf.describe(o) for o in objects}, recording)
        settle(pg.url(), table_names)
        with phases(LOAD) as straight:
            replay(f"bench__{size}__export", pieces, replayed)
        settle(pg.url())
        with phases(LOAD) as again:
            replay(f"bench__{size}__export", pieces, replayed)
        settle(pg.url())
        baseline = raw_copy_seconds(pg.url(), recording)

        rows = sum(recording.rows.values())
        ours = straight["total"]
        print(f"  slice by slice, {len(pieces)} slices, {rows:,} rows:")
        print(
            f"  (a) the org's export: {org_seconds:.1f} s, {rows / org_seconds:,.0f} rows/s; where time goes:"
        )
        print_phases(exported, indent="      ")
        print(f"  (b) the sync given the CSV: {ours:.1f} s, {rows / ours:,.0f} rows/s; where time goes:")
        print_phases(straight, indent="      ")
        print(f"      run again over its own rows (staged and merged): {again['total']:.1f} s; where:")
        print_phases(again, indent="      ")
        print(f"  (c) raw COPY of the same rows: {baseline:.1f} s, {rows / baseline:,.0f} rows/s")
        print(
            f"  (b)/(c): {ours / baseline:.1f}x raw COPY (target: 2x); run again:"
            f" {again['total'] / baseline:.1f}x; as the DAG runs it: {pooled / baseline:.1f}x"
        )
        print(
            "  API calls per object, slice by slice: by the org / by the sync's meter (per million records)"
        )
        totals = tuple(sum(c[i] for c in calls.values()) for i in (0, 1))
        for sobject, (by_org, by_meter) in [*calls.items(), ("all", totals)]:
            records = rows if sobject == "all" else recording.rows[sobject]
            per_million = f"{by_org / records * 1e6:,.0f}" if records else "-"
            print(f"    {sobject:24s} {records:9,} records: {by_org:5} / {by_meter:5}  ({per_million})")
        return rows, pooled, ours


def measure(sizes: list[int], job_records: int | None, every_object: bool, profile: str) -> None:
    """Every size on a fresh stack whose org runs under ``profile``; then how time grows with size."""
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="sfsync-bench-") as tmp:
            results.append(run(size, job_records, every_object, Path(tmp), profile))
    (small_rows, *small), (big_rows, *big) = results[0], results[-1]
    if len(results) > 1:
        for label, small_s, big_s in zip(
            ("as the DAG runs it", "the sync given the CSV"), small, big, strict=True
        ):
            print(
                f"growth, {label}: {big_rows / small_rows:.1f}x the rows took {big_s / small_s:.1f}x the time"
                f" ({small_s / small_rows * 1e6:.1f} vs {big_s / big_rows * 1e6:.1f} us per row)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000", help="Leads loaded (a fifth more are seeded)")
    parser.add_argument(
        "--job-records", type=int, help="about the most records one Bulk job copies (default: the registry's)"
    )
    parser.add_argument("--objects", choices=("lead", "all"), default="lead")
    add_profile_option(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    under_profiles(args, lambda profile: measure(sizes, args.job_records, args.objects == "all", profile))


if __name__ == "__main__":
    main()
