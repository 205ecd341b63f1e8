"""Bulk API 2.0 query export rate of the local org, through the real simple-salesforce client.

Seeds N realistic Leads (``localorg.seed``) into a fresh org, starts the server in a subprocess and
exports 30 Lead fields with ``sf.bulk2.Lead.query`` (job, polling, CSV pages of 50,000 rows by
locator), timing the whole export and its first page (the job's latency plus one page). The baseline,
measured in the same run, is a raw SQLite read of the same rows and columns; the ratio shows the cost
of the API (SOQL compile, CSV spool, paging over TLS, client decoding). Then a full load's slice: the
sync user's queryAll of 30 days of CreatedDate (about a twelfth of the rows, through the CreatedDate
index and the user's visibility test), whose rate should be the whole export's, not a twelfth of it.

Usage: python bench/localorg_bulk.py [--rows N] [--page N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from common import LEAD_FIELDS, raw_sqlite_rate
from simple_salesforce import Salesforce

from localorg.orgdef import load_org
from localorg.seed import Seeder
from localorg.store import Org
from localorg.testing import running_org

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--page", type=int, default=50_000, help="maxRecords per results page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "org"
        org = Org(data_dir, load_org())
        started = time.perf_counter()
        Seeder(org, seed=1).leads(args.rows)
        print(f"seeded {args.rows:,} Leads in {time.perf_counter() - started:.1f}s")

        baseline = raw_sqlite_rate(data_dir)
        print(f"baseline: raw SQLite read            {baseline:12,.0f} records/s")

        with running_org(data_dir) as running:
            os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_file)
            sf = Salesforce(**running.salesforce_kwargs("admin"))
            soql = f"SELECT {', '.join(LEAD_FIELDS)} FROM Lead"
            started = time.perf_counter()
            count, first_page = 0, 0.0
            for page in sf.bulk2.Lead.query(soql, max_records=args.page, wait=0):
                # The first page comes once the job is complete: the job's latency, plus one page.
                first_page = first_page or time.perf_counter() - started
                count += page.count("\n") - 1
            elapsed = time.perf_counter() - started

            sync = Salesforce(**running.salesforce_kwargs("integration"))
            with sqlite3.connect(data_dir / "org.sqlite") as conn:
                first_created = conn.execute('SELECT MIN("CreatedDate") FROM "Lead"').fetchone()[0]
            since = first_created // 1000 * 1000 + 150 * DAY_MS
            until = since + 30 * DAY_MS
            window = f"CreatedDate >= {_soql_datetime(since)} AND CreatedDate < {_soql_datetime(until)}"
            started = time.perf_counter()
            pages = sync.bulk2.Lead.query_all(f"{soql} WHERE {window}", max_records=args.page, wait=0)
            slice_rows = sum(page.count("\n") - 1 for page in pages)
            slice_elapsed = time.perf_counter() - started
        assert count == args.rows, count
        rate = count / elapsed
        print(
            f"localorg Bulk API 2.0 query ({len(LEAD_FIELDS)} fields, pages of {args.page:,}): "
            f"{rate:12,.0f} records/s ({elapsed:.1f}s, first page after {first_page:.2f}s)"
        )
        print(f"ratio to baseline: {rate / baseline:.3f} (target: >= 100,000 records/s)")
        slice_rate = slice_rows / slice_elapsed
        print(
            f"a full load's 30-day slice (integration user, queryAll): {slice_rows:,} rows, "
            f"{slice_rate:,.0f} records/s ({slice_elapsed:.2f}s, {slice_rate / rate:.2f} of the export's)"
        )


def _soql_datetime(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    main()
