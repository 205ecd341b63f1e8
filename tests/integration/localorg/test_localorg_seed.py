"""Seeded data (deterministic, consistent relationships), the activity mode and the rolling API limit."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from localorg.activity import Activity
from localorg.orgdef import load_org
from localorg.schema import now_ms, parse_datetime
from localorg.seed import Seeder, counts_for
from localorg.store import Org

pytestmark = pytest.mark.integration
AS_OF = parse_datetime("2025-03-01")


def seeded(path: Path, seed: int) -> Org:
    org = Org(path, load_org())
    Seeder(org, seed, AS_OF).run(counts_for(2_000))
    return org


def rows(org: Org, sql: str) -> list[tuple]:
    return org.conn().execute(sql).fetchall()


def test_seed_is_deterministic_and_consistent(tmp_path: Path) -> None:
    first, second = seeded(tmp_path / "a", 7), seeded(tmp_path / "b", 7)
    dump = 'SELECT "Id", "Email", "OwnerId", "CreatedDate" FROM "Lead" ORDER BY rowid'
    assert rows(first, dump) == rows(second, dump)
    assert rows(first, dump) != rows(seeded(tmp_path / "c", 8), dump)
    assert rows(first, 'SELECT COUNT(*) FROM "Lead"') == [(2_000,)]
    orphans = {
        "contact account": 'SELECT COUNT(*) FROM "Contact" c LEFT JOIN "Account" a ON a."Id" = c."AccountId" '
        'WHERE a."Id" IS NULL',
        "contact owner = account owner": 'SELECT COUNT(*) FROM "Contact" c JOIN "Account" a '
        'ON a."Id" = c."AccountId" WHERE a."OwnerId" != c."OwnerId"',
        "member status from its campaign": 'SELECT COUNT(*) FROM "CampaignMember" m WHERE NOT EXISTS '
        '(SELECT 1 FROM "CampaignMemberStatus" s WHERE s."CampaignId" = m."CampaignId" '
        'AND s."Label" = m."Status")',
        "role contact under the opportunity's account": 'SELECT COUNT(*) FROM "OpportunityContactRole" r '
        'JOIN "Opportunity" o ON o."Id" = r."OpportunityId" JOIN "Contact" c ON c."Id" = r."ContactId" '
        'WHERE c."AccountId" != o."AccountId"',
        "invoice account": 'SELECT COUNT(*) FROM "Invoice__c" i LEFT JOIN "Account" a '
        'ON a."Id" = i."Account__c" WHERE a."Id" IS NULL',
        "subscription contact": 'SELECT COUNT(*) FROM "Subscription__c" s LEFT JOIN "Contact" c ON '
        'c."Id" = s."Contact__c" WHERE c."Id" IS NULL',
    }
    assert {name: rows(first, sql)[0][0] for name, sql in orphans.items()} == dict.fromkeys(orphans, 0)
    owners = dict(rows(first, 'SELECT "OwnerId", COUNT(*) FROM "Lead" GROUP BY 1'))
    assert first.users["hidden@localorg.test"].id in owners and len(owners) == 4
    assert rows(first, 'SELECT COUNT(*) FROM "Lead" WHERE "LastActivityDate" IS NOT NULL')[0][0] > 0
    assert rows(first, 'SELECT COUNT(DISTINCT "WhoId") FROM "Task" WHERE "WhoId" LIKE \'003%\'')[0][0] > 0


def test_activity_runs_every_operation(tmp_path: Path) -> None:
    org = seeded(tmp_path / "org", 3)
    counts = Activity(org, seed=3).run(rate=100_000, operations=400)
    assert all(counts.values()), counts
    assert rows(org, 'SELECT COUNT(*) FROM "Lead" WHERE "IsConverted" = 1')[0][0] == counts["convert_lead"]
    assert rows(org, 'SELECT COUNT(*) FROM "Lead" WHERE "MasterRecordId" IS NOT NULL')[0][0] > 0


def test_daily_limit_is_a_rolling_24_hours(tmp_path: Path) -> None:
    org = Org(tmp_path / "org", load_org())
    minute = now_ms() // 60_000
    with sqlite3.connect(org.path) as conn:
        conn.executemany(
            "INSERT INTO _api_requests VALUES (?, ?)", [(minute - 24 * 60, 500), (minute - 23 * 60, 7)]
        )
    assert org.api_usage() == 7  # the bucket 24 hours old no longer counts
    assert org.count_api_request(limit=8) == (8, True)
    assert org.count_api_request(limit=8) == (8, False)


def test_seed_cli_creates_the_asked_counts(tmp_path: Path) -> None:
    data = tmp_path / "org"
    command = [sys.executable, "-m", "localorg", "seed", "--data", str(data), "--seed", "5", "--count", "300"]
    out = subprocess.run([*command, "--objects", "Account=40"], capture_output=True, text=True, check=True)
    reported = json.loads(out.stdout.splitlines()[0])
    assert reported["Lead"] == 300 and reported["Account"] == 40
    with sqlite3.connect(data / "org.sqlite") as conn:
        for name, count in reported.items():
            assert conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] == count, name
