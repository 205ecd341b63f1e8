"""Bulk API 2.0 query export rate of the local org, through the real simple-salesforce client.

Seeds N realistic Leads (``localorg.seed``) into a fresh org, starts the server in a subprocess and
exports 30 Lead fields with ``sf.bulk2.Lead.query`` (job, polling, CSV pages of 50,000 rows by
locator), timing the whole export and its first page (the job's latency plus one page). The baseline,
measured in the same run, is a raw SQLite read of the same rows and columns; the ratio shows the cost
of the API (SOQL compile, CSV spool, paging over TLS, client decoding).

Usage: python bench/localorg_bulk.py [--rows N] [--page N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import LEAD_FIELDS, raw_sqlite_rate
from simple_salesforce import Salesforce

from localorg.orgdef import load_org
from localorg.seed import Seeder
from localorg.store import Org
from localorg.testing import running_org


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
        assert count == args.rows, count
        rate = count / elapsed
        print(
            f"localorg Bulk API 2.0 query ({len(LEAD_FIELDS)} fields, pages of {args.page:,}): "
            f"{rate:12,.0f} records/s ({elapsed:.1f}s, first page after {first_page:.2f}s)"
        )
        print(f"ratio to baseline: {rate / baseline:.3f} (target: >= 100,000 records/s)")


if __name__ == "__main__":
    main()
