"""Records per second served by the local org through SOQL query paging (real simple-salesforce client).

Seeds 200,000 Leads straight into a fresh org's SQLite store, starts the server in a subprocess and
reads them back with ``query_all_iter`` selecting 30 fields (pages of 2,000). The baseline, measured in
the same run, is a raw SQLite read of the same rows and columns; the ratio shows the cost of the
API (SOQL compile, cursor, JSON over TLS, client parsing).

Usage: python bench/localorg_query.py [--rows N]
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
from localorg.store import Org
from localorg.testing import running_org


def leads(count: int) -> list[dict[str, object]]:
    return [
        {
            "Salutation": "Ms.",
            "FirstName": f"First{i}",
            "LastName": f"Last{i}",
            "Title": "Director",
            "Company": f"Company {i % 5000}",
            "Email": f"lead{i}@example.com",
            "Phone": "+1 555 0100",
            "MobilePhone": "+1 555 0199",
            "Website": "https://example.com",
            "Street": f"{i} Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            "Country": "US",
            "Status": "Working - Contacted",
            "LeadSource": "Web",
            "Industry": "Technology",
            "Rating": "Warm",
            "AnnualRevenue": 1_000_000 + i,
            "NumberOfEmployees": i % 1000,
            "HasOptedOutOfEmail": i % 2 == 0,
            "DoNotCall": False,
            "Lead_Score__c": i % 100 + 0.5,
            "Warehouse_Id__c": f"wh-{i}",
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "org"
        org = Org(data_dir, load_org())
        started = time.perf_counter()
        org.seed("Lead", leads(args.rows), owner="integration@localorg.test")
        print(f"seeded {args.rows:,} Leads in {time.perf_counter() - started:.1f}s")

        baseline = raw_sqlite_rate(data_dir)
        print(f"baseline: raw SQLite read      {baseline:12,.0f} records/s")

        with running_org(data_dir) as running:
            os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_file)
            sf = Salesforce(**running.salesforce_kwargs("integration"))
            soql = f"SELECT {', '.join(LEAD_FIELDS)} FROM Lead"
            started = time.perf_counter()
            count = sum(1 for _ in sf.query_all_iter(soql))
            elapsed = time.perf_counter() - started
        assert count == args.rows, count
        rate = count / elapsed
        print(
            f"localorg query paging ({len(LEAD_FIELDS)} fields, pages of 2,000): {rate:12,.0f} records/s "
            f"({elapsed:.1f}s)"
        )
        print(f"ratio to baseline: {rate / baseline:.3f} (target: >= 20,000 records/s)")


if __name__ == "__main__":
    main()
