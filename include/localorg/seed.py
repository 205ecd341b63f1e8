"""Realistic, deterministic org data, written straight into SQLite (``python -m localorg seed``).

The same ``seed`` and ``as_of`` day give the same records. Values come from pools of Faker values
drawn once per run, then picked per column with ``random.choices`` and inserted with ``executemany``,
so a million Leads take seconds, not the hours the API would. Relationships are consistent: contacts,
opportunities and invoices under accounts (owned by the account's owner), contact roles on
opportunities, campaign members (leads and contacts) with statuses from their campaign's
CampaignMemberStatus rows, tasks and events on leads and contacts (LastActivityDate rolled up as
Salesforce does), subscriptions under contacts. Owners are spread over the org's users, including
the Confidential role the integration user cannot see.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from faker import Faker

from .database import Database, quote
from .ids import make_id
from .schema import SObject, format_date, parse_datetime

_DAY_MS = 86_400_000
_CHUNK = 50_000
_POOL = 2_000
# Share of records owned by each user; hidden@ is in the Confidential role the integration user cannot see.
OWNER_WEIGHTS = {
    "sales@localorg.test": 5,
    "admin@localorg.test": 2,
    "integration@localorg.test": 1,
    "hidden@localorg.test": 2,
}
# Per Lead in --count: how many of each other object.
RATIOS = {
    "Account": 0.05,
    "Contact": 0.2,
    "Opportunity": 0.05,
    "Campaign": 0.0005,
    "CampaignMember": 0.1,
    "Task": 0.1,
    "Event": 0.05,
    "Invoice__c": 0.1,
    "Subscription__c": 0.1,
}
_CAMPAIGN_STATUSES = {
    "Webinar": [("Invited", False), ("Registered", True), ("Attended", True), ("No Show", False)],
    "Email": [("Sent", False), ("Opened", True), ("Clicked", True)],
    "Trade Show": [("Planned", False), ("Visited Booth", True)],
    "Conference": [("Invited", False), ("Attended", True)],
    "Advertisement": [("Sent", False), ("Responded", True)],
    "Other": [("Sent", False), ("Responded", True)],
}
_STAGES = [
    ("Prospecting", 10),
    ("Qualification", 20),
    ("Proposal/Price Quote", 50),
    ("Negotiation/Review", 75),
    ("Closed Won", 100),
    ("Closed Lost", 0),
]


def counts_for(leads: int, overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Record counts per object for ``leads`` Leads, with explicit per-object overrides."""
    counts = {"Lead": leads, **{name: max(1, int(leads * r)) for name, r in RATIOS.items()}}
    counts.update(overrides or {})
    return counts


def insert_records(
    db: Database,
    obj_name: str,
    records: Iterable[dict[str, Any]],
    owner: str,
    chunk: int = 10_000,
    at: int | None = None,
) -> int:
    """Insert records straight into the store (no API, no validation), for benchmarks and demos.

    ``records`` hold API-shaped values; system fields are filled as the API would. Returns the count.
    """
    obj = db.schema.objects[obj_name.lower()]
    user = db.users[owner]
    columns = [f for f in obj.stored_fields() if not f.system]
    names = [
        "Id",
        "IsDeleted",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        *([] if not obj.owned else ["OwnerId"]),
        *(f.name for f in columns),
    ]
    sql = (
        f"INSERT INTO {quote(obj.name)} (rowid, {', '.join(map(quote, names))}) "
        f"VALUES (?{', ?' * len(names)})"
    )
    total = 0
    with db.write(user, at) as txn:
        seq = txn.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {quote(obj.name)}").fetchone()[0]
        batch: list[tuple[Any, ...]] = []
        for record in records:
            seq += 1
            system = (make_id(obj.key_prefix, seq), 0, txn.ts, user.id, txn.ts, user.id, txn.ts)
            owner_col = (user.id,) if obj.owned else ()
            batch.append(
                (seq, *system, *owner_col, *(f.encode(record.get(f.name, f.default)) for f in columns))
            )
            if len(batch) >= chunk:
                txn.conn.executemany(sql, batch)
                total += len(batch)
                batch.clear()
        txn.conn.executemany(sql, batch)
        total += len(batch)
    return total


@dataclass
class _Pools:
    """Faker values drawn once; columns pick from them."""

    first: list[str]
    last: list[str]
    company: list[str]
    title: list[str]
    street: list[str]
    city: list[str]
    state: list[str]
    postcode: list[str]
    country: list[str]
    phone: list[str]
    domain: list[str]
    sentence: list[str]
    catch: list[str]

    @classmethod
    def draw(cls, fake: Faker) -> _Pools:
        def pool(make: Any, size: int = _POOL) -> list[str]:
            return [make() for _ in range(size)]

        return cls(
            first=pool(fake.first_name),
            last=pool(fake.last_name),
            company=pool(fake.company),
            title=pool(fake.job, 300),
            street=pool(fake.street_address),
            city=pool(fake.city, 500),
            state=pool(fake.state, 50),
            postcode=pool(fake.postcode, 500),
            country=["United States"] * 6 + ["Canada", "United Kingdom", "Germany", "France"],
            phone=pool(fake.phone_number),
            domain=pool(fake.domain_name, 500),
            sentence=pool(fake.sentence, 500),
            catch=pool(fake.catch_phrase, 500),
        )


class Seeder:
    """Writes one seeded data set into an org's SQLite store."""

    def __init__(self, org: Database, seed: int, as_of: int | None = None) -> None:
        self.org = org
        self.rng = random.Random(seed)
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.pools = _Pools.draw(fake)
        day = (as_of if as_of is not None else int(time.time() * 1000)) // _DAY_MS * _DAY_MS
        self.now = day
        owners = [(org.users[name].id, weight) for name, weight in OWNER_WEIGHTS.items() if name in org.users]
        self.owner_ids = [o for o, _ in owners]
        self.owner_weights = [w for _, w in owners]
        self.admin = next(u for u in org.users.values() if u.view_all)
        self.admin_id = self.admin.id

    # -- helpers ----------------------------------------------------------------------------------

    def pick(self, pool: Sequence[Any], n: int, weights: Sequence[float] | None = None) -> list[Any]:
        return self.rng.choices(pool, weights=weights, k=n)

    def owners(self, n: int) -> list[str]:
        return self.pick(self.owner_ids, n, self.owner_weights)

    def stamps(self, n: int, days: int = 365) -> tuple[list[int], list[int]]:
        """(CreatedDate, LastModifiedDate): created within ``days`` of the as-of day, modified since."""
        rnd = self.rng.random
        span = days * _DAY_MS
        created = [self.now - int(rnd() * span) for _ in range(n)]
        modified = [c + int(rnd() * (self.now - c)) for c in created]
        return created, modified

    def dates(self, n: int, back: int, ahead: int) -> list[str]:
        rnd = self.rng.random
        return [format_date(self.now + int((rnd() * (back + ahead) - back) * _DAY_MS)) for _ in range(n)]

    def insert(self, name: str, columns: dict[str, list[Any]], owners: list[str] | None = None) -> list[str]:
        """Insert rows given column-wise (API field name -> stored values); returns the new Ids."""
        obj = self.org.schema.objects[name.lower()]
        n = len(next(iter(columns.values())))
        created, modified = self.stamps(n)
        names = ["Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"]
        names += ["SystemModstamp", *(["OwnerId"] if obj.owned else []), *columns]
        sql = (
            f"INSERT INTO {quote(obj.name)} (rowid, {', '.join(map(quote, names))}) "
            f"VALUES (?{', ?' * len(names)})"
        )
        with self.org.write(self.admin, at=self.now) as txn:
            first = txn.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) + 1 FROM {quote(obj.name)}").fetchone()[
                0
            ]
            ids = [make_id(obj.key_prefix, seq) for seq in range(first, first + n)]
            owner_col = [owners or self.owners(n)] if obj.owned else []
            rows = zip(
                range(first, first + n),
                ids,
                [0] * n,
                created,
                [self.admin_id] * n,
                modified,
                [self.admin_id] * n,
                modified,
                *owner_col,
                *columns.values(),
                strict=True,
            )
            for chunk in _chunks(rows, _CHUNK):
                txn.conn.executemany(sql, chunk)
        return ids

    # -- objects ----------------------------------------------------------------------------------

    def leads(self, n: int) -> list[str]:
        p, pick = self.pools, self.pick
        first, last = pick(p.first, n), pick(p.last, n)
        domains = pick(p.domain, n)
        emails = [
            f"{f}.{la}{i}@{d}".lower().replace(" ", "")
            for i, (f, la, d) in enumerate(zip(first, last, domains, strict=False))
        ]
        lead = self.org.schema.objects["lead"]
        return self.insert(
            "Lead",
            {
                "Salutation": pick(["Mr.", "Ms.", "Mrs.", "Dr.", None], n),
                "FirstName": first,
                "LastName": last,
                "Title": pick(p.title, n),
                "Company": pick(p.company, n),
                "Email": emails,
                "Phone": pick(p.phone, n),
                "MobilePhone": pick([*p.phone[:200], None], n),
                "Website": [f"https://www.{d}" for d in domains],
                "Street": pick(p.street, n),
                "City": pick(p.city, n),
                "State": pick(p.state, n),
                "PostalCode": pick(p.postcode, n),
                "Country": pick(p.country, n),
                "Status": pick(
                    ["Open - Not Contacted", "Working - Contacted", "Closed - Not Converted"], n, [6, 3, 1]
                ),
                "LeadSource": pick(_values(lead, "LeadSource"), n),
                "Industry": pick(_values(lead, "Industry"), n),
                "Rating": pick([*_values(lead, "Rating"), None], n),
                "AnnualRevenue": [float(self.rng.randrange(100, 50_000) * 1000) for _ in range(n)],
                "NumberOfEmployees": [self.rng.randrange(1, 20_000) for _ in range(n)],
                "HasOptedOutOfEmail": pick([0, 0, 0, 1], n),
                "DoNotCall": pick([0, 0, 0, 0, 1], n),
                "Description": pick([*p.sentence[:50], *[None] * 150], n),
                "Lead_Score__c": [round(self.rng.random() * 100, 2) for _ in range(n)],
                "Interests__c": pick(
                    ["Analytics", "Email;Mobile", "Automation;Analytics", "Events", None], n
                ),
                "Internal_Rating__c": pick(["A", "B", "C", None], n),
                "IsConverted": [0] * n,
            },
        )

    def accounts(self, n: int) -> tuple[list[str], list[str], list[str]]:
        """(Ids, names, owners)."""
        p, pick = self.pools, self.pick
        names, owners = pick(p.company, n), self.owners(n)
        account = self.org.schema.objects["account"]
        ids = self.insert(
            "Account",
            {
                "Name": names,
                "AccountNumber": [f"CD{self.rng.randrange(10**6):06d}" for _ in range(n)],
                "Type": pick(_values(account, "Type"), n),
                "Industry": pick(_values(account, "Industry"), n),
                "Rating": pick([*_values(account, "Rating"), None], n),
                "AnnualRevenue": [float(self.rng.randrange(100, 500_000) * 1000) for _ in range(n)],
                "NumberOfEmployees": [self.rng.randrange(1, 100_000) for _ in range(n)],
                "Phone": pick(p.phone, n),
                "Website": [f"https://www.{d}" for d in pick(p.domain, n)],
                "BillingStreet": pick(p.street, n),
                "BillingCity": pick(p.city, n),
                "BillingState": pick(p.state, n),
                "BillingPostalCode": pick(p.postcode, n),
                "BillingCountry": pick(p.country, n),
                "Description": pick([*p.catch, *[None] * 500], n),
            },
            owners,
        )
        return ids, names, owners

    def contacts(self, n: int, accounts: list[str], account_owners: list[str]) -> tuple[list[str], list[int]]:
        """(Ids, index of each contact's account)."""
        p, pick = self.pools, self.pick
        which = [self.rng.randrange(len(accounts)) for _ in range(n)]
        first, last = pick(p.first, n), pick(p.last, n)
        contact = self.org.schema.objects["contact"]
        ids = self.insert(
            "Contact",
            {
                "AccountId": [accounts[i] for i in which],
                "Salutation": pick(["Mr.", "Ms.", "Mrs.", "Dr.", None], n),
                "FirstName": first,
                "LastName": last,
                "Title": pick(p.title, n),
                "Department": pick(["Sales", "Marketing", "Finance", "IT", "Operations", None], n),
                "Email": [
                    f"{f}.{la}.c{i}@example.com".lower().replace(" ", "")
                    for i, (f, la) in enumerate(zip(first, last, strict=False))
                ],
                "Phone": pick(p.phone, n),
                "Birthdate": self.dates(n, 365 * 60, -365 * 20),
                "LeadSource": pick(_values(contact, "LeadSource"), n),
                "MailingStreet": pick(p.street, n),
                "MailingCity": pick(p.city, n),
                "MailingState": pick(p.state, n),
                "MailingPostalCode": pick(p.postcode, n),
                "MailingCountry": pick(p.country, n),
                "HasOptedOutOfEmail": pick([0, 0, 0, 1], n),
                "DoNotCall": pick([0, 0, 0, 0, 1], n),
            },
            [account_owners[i] for i in which],
        )
        return ids, which

    def opportunities(
        self,
        n: int,
        accounts: list[str],
        names: list[str],
        owners: list[str],
        contacts_by_account: dict[int, list[str]],
    ) -> None:
        pick = self.pick
        which = [self.rng.randrange(len(accounts)) for _ in range(n)]
        stages = pick(_STAGES, n, [3, 2, 2, 1, 2, 1])
        ids = self.insert(
            "Opportunity",
            {
                "Name": [
                    f"{names[i]} - {kind}"
                    for i, kind in zip(which, pick(["New", "Upgrade", "Renewal"], n), strict=False)
                ],
                "AccountId": [accounts[i] for i in which],
                "StageName": [s for s, _ in stages],
                "Probability": [float(p) for _, p in stages],
                "CloseDate": self.dates(n, 180, 180),
                "Amount": [float(self.rng.randrange(1, 500) * 500) for _ in range(n)],
                "Type": pick(
                    ["New Customer", "Existing Customer - Upgrade", "Existing Customer - Renewal"], n
                ),
                "LeadSource": pick(["Web", "Phone Inquiry", "Partner Referral", "Other"], n),
            },
            [owners[i] for i in which],
        )
        roles: dict[str, list[Any]] = {"OpportunityId": [], "ContactId": [], "Role": [], "IsPrimary": []}
        for opp, account in zip(ids, which, strict=True):
            people = contacts_by_account.get(account, [])
            for k, contact in enumerate(self.rng.sample(people, min(len(people), self.rng.randint(1, 2)))):
                roles["OpportunityId"].append(opp)
                roles["ContactId"].append(contact)
                roles["Role"].append(self.rng.choice(["Decision Maker", "Economic Buyer", "Technical Buyer"]))
                roles["IsPrimary"].append(int(k == 0))
        if roles["OpportunityId"]:
            self.insert("OpportunityContactRole", roles)

    def campaigns(self, n: int, members: int, leads: list[str], contacts: list[str]) -> None:
        types = self.pick(list(_CAMPAIGN_STATUSES), n)
        ids = self.insert(
            "Campaign",
            {
                "Name": [f"{t} {self.rng.choice(self.pools.catch)}"[:80] for t in types],
                "Type": types,
                "Status": self.pick(["Planned", "In Progress", "Completed"], n),
                "StartDate": self.dates(n, 300, 30),
                "BudgetedCost": [float(self.rng.randrange(1, 100) * 1000) for _ in range(n)],
                "IsActive": self.pick([0, 1], n),
            },
        )
        statuses: dict[str, list[Any]] = {
            "CampaignId": [],
            "Label": [],
            "SortOrder": [],
            "IsDefault": [],
            "HasResponded": [],
        }
        for campaign, kind in zip(ids, types, strict=True):
            for order, (label, responded) in enumerate(_CAMPAIGN_STATUSES[kind], 1):
                for key, value in zip(
                    statuses, (campaign, label, order, int(order == 1), int(responded)), strict=False
                ):
                    statuses[key].append(value)
        self.insert("CampaignMemberStatus", statuses)
        seen: set[tuple[int, str]] = set()
        rows: dict[str, list[Any]] = {"CampaignId": [], "LeadId": [], "ContactId": [], "Status": []}
        people = [(lead, None) for lead in leads] + [(None, contact) for contact in contacts]
        for _ in range(members):
            c = self.rng.randrange(n)
            lead, contact = people[self.rng.randrange(len(people))]
            if (c, lead or contact or "") in seen:
                continue
            seen.add((c, lead or contact or ""))
            for key, value in zip(
                rows, (ids[c], lead, contact, self.rng.choice(_CAMPAIGN_STATUSES[types[c]])[0]), strict=False
            ):
                rows[key].append(value)
        if rows["CampaignId"]:
            self.insert("CampaignMember", rows)

    def activities(self, tasks: int, events: int, people: list[str]) -> None:
        pick = self.pick
        self.insert(
            "Task",
            {
                "Subject": pick(["Call", "Send quote", "Follow up", "Email", "Demo prep"], tasks),
                "ActivityDate": self.dates(tasks, 200, 30),
                "Status": pick(["Not Started", "In Progress", "Completed"], tasks, [2, 1, 4]),
                "Priority": pick(["High", "Normal", "Low"], tasks, [1, 4, 1]),
                "WhoId": pick(people, tasks),
                "Type": pick(["Call", "Email", "Meeting", "Other"], tasks),
            },
        )
        starts = [self.now + int((self.rng.random() * 230 - 200) * _DAY_MS) for _ in range(events)]
        self.insert(
            "Event",
            {
                "Subject": pick(["Meeting", "Demo", "Lunch", "Review"], events),
                "StartDateTime": starts,
                "EndDateTime": [s + 3_600_000 for s in starts],
                "Location": pick([*self.pools.city[:50], None], events),
                "WhoId": pick(people, events),
            },
        )
        self.roll_up_activity()

    def roll_up_activity(self) -> None:
        """LastActivityDate of leads, contacts and accounts, as Salesforce maintains it."""
        schema = self.org.schema.objects
        dates = " UNION ALL ".join(
            f'SELECT "{ref}" AS id, {act.field("ActivityDate").sql("a")} AS d FROM {quote(act.name)} a '  # type: ignore[union-attr]
            'WHERE a."IsDeleted" = 0'
            for act in (schema["task"], schema["event"])
            for ref in ("WhoId", "WhatId")
        )
        with self.org.write(self.admin, at=self.now) as txn:
            conn = txn.conn
            conn.execute("DROP TABLE IF EXISTS temp.latest_activity")
            conn.execute(
                f"CREATE TEMP TABLE latest_activity AS SELECT id, MAX(d) AS d FROM ({dates}) "
                "WHERE id IS NOT NULL GROUP BY id"
            )
            for name in ("Lead", "Contact", "Account", "Opportunity"):
                conn.execute(
                    f'UPDATE {quote(name)} SET "LastActivityDate" = la.d FROM temp.latest_activity la '
                    f'WHERE la.id = {quote(name)}."Id"'
                )

    def invoices(self, n: int, accounts: list[str], owners: list[str]) -> None:
        which = [self.rng.randrange(len(accounts)) for _ in range(n)]
        invoice_dates = self.dates(n, 365, 0)
        first = self.org.conn().execute('SELECT COALESCE(MAX(rowid), 0) FROM "Invoice__c"').fetchone()[0]
        amounts = [round(self.rng.randrange(100, 100_000) / 1.0, 2) for _ in range(n)]
        self.insert(
            "Invoice__c",
            {
                "Name": [f"INV-{first + i + 1:07d}" for i in range(n)],
                "Account__c": [accounts[i] for i in which],
                "Invoice_Number__c": [f"N{first + i + 1:09d}" for i in range(n)],
                "Status__c": self.pick(["Draft", "Sent", "Paid", "Void"], n, [1, 3, 5, 1]),
                "Invoice_Date__c": invoice_dates,
                "Due_Date__c": [format_date(parse_datetime(d) + 30 * _DAY_MS) for d in invoice_dates],
                "Amount__c": amounts,
                "Tax__c": [round(a * 0.2, 2) for a in amounts],
                "Paid__c": self.pick([0, 1], n),
            },
            [owners[i] for i in which],
        )

    def subscriptions(self, n: int, contacts: list[str]) -> None:
        first = self.org.conn().execute('SELECT COALESCE(MAX(rowid), 0) FROM "Subscription__c"').fetchone()[0]
        plans = self.pick(
            [("Free", 0.0), ("Starter", 29.0), ("Professional", 99.0), ("Enterprise", 499.0)], n
        )
        self.insert(
            "Subscription__c",
            {
                "Name": [f"SUB-{first + i + 1:07d}" for i in range(n)],
                "Contact__c": self.pick(contacts, n),
                "External_Key__c": [f"sub-{self.rng.getrandbits(64):016x}-{first + i}" for i in range(n)],
                "Plan__c": [p for p, _ in plans],
                "Features__c": self.pick(["API", "API;SSO", "Audit Log;SSO", None], n),
                "Seats__c": [self.rng.randrange(1, 500) for _ in range(n)],
                "Monthly_Price__c": [price for _, price in plans],
                "Discount__c": self.pick([0.0, 5.0, 10.0, 15.5], n),
                "Start_Date__c": self.dates(n, 700, 0),
                "Active__c": self.pick([1, 1, 1, 0], n),
            },
        )

    def run(self, counts: dict[str, int]) -> dict[str, int]:
        """Seed every object of ``counts``; returns rows written per object."""
        accounts, names, owners = self.accounts(counts["Account"])
        contacts, which = self.contacts(counts["Contact"], accounts, owners)
        by_account: dict[int, list[str]] = {}
        for contact, account in zip(contacts, which, strict=True):
            by_account.setdefault(account, []).append(contact)
        self.opportunities(counts["Opportunity"], accounts, names, owners, by_account)
        leads = self.leads(counts["Lead"])
        self.campaigns(counts["Campaign"], counts["CampaignMember"], leads, contacts)
        self.activities(counts["Task"], counts["Event"], leads[: len(leads) // 2] + contacts)
        self.invoices(counts["Invoice__c"], accounts, owners)
        self.subscriptions(counts["Subscription__c"], contacts)
        self.org.analyze()
        conn = self.org.conn()
        return {
            obj.name: conn.execute(f"SELECT COUNT(*) FROM {quote(obj.name)}").fetchone()[0]
            for obj in self.org.schema.objects.values()
        }


def _values(obj: SObject, field: str) -> list[str]:
    return [v.value for v in obj.fields[field.lower()].picklist if v.active]


def _chunks(rows: Iterator[tuple[Any, ...]] | Any, size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
