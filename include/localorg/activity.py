"""A live org: ``python -m localorg activity --rate N`` keeps creating, changing, deleting, undeleting,
merging and converting records through the store (the same write path and validation as the API),
so demos and soak tests see an org that moves. It can run next to a server on the same data directory.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from faker import Faker

from .database import Txn, quote
from .errors import SalesforceError
from .seed import OWNER_WEIGHTS
from .store import Org

# Operation -> weight.
MIX = {
    "create_lead": 30,
    "update_lead": 20,
    "update_contact": 10,
    "log_task": 10,
    "delete_lead": 8,
    "undelete": 4,
    "merge_leads": 4,
    "merge_contacts": 2,
    "convert_lead": 8,
    "add_campaign_member": 4,
}


class Activity:
    """Random changes to an org, one per ``step``."""

    def __init__(self, org: Org, seed: int | None = None) -> None:
        self.org = org
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.actor = next(u for u in org.users.values() if u.view_all)
        self.owners = [org.users[name].id for name in OWNER_WEIGHTS if name in org.users]
        self.counts: dict[str, int] = dict.fromkeys(MIX, 0)

    def step(self) -> str | None:
        """Run one random operation; returns its name, or None when it had nothing to act on."""
        name = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        operation: Callable[[Txn], bool] = getattr(self, name)
        try:
            with self.org.write(self.actor) as txn:
                done = operation(txn)
        except SalesforceError:
            return None  # e.g. a random update broke a validation rule: real orgs see those too
        if done:
            self.counts[name] += 1
        return name if done else None

    def run(
        self, rate: float, duration: float | None = None, operations: int | None = None
    ) -> dict[str, int]:
        """Run ``rate`` operations per second until ``duration`` seconds or ``operations`` have passed."""
        start = time.monotonic()
        done = 0
        while (duration is None or time.monotonic() - start < duration) and (
            operations is None or done < operations
        ):
            self.step()
            done += 1
            delay = start + done / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return self.counts

    # -- picking records --------------------------------------------------------------------------

    def pick(self, txn: Txn, obj_name: str, where: str = '"IsDeleted" = 0') -> str | None:
        """A random record of ``obj_name`` matching ``where`` (a random rowid, then the next match)."""
        table = quote(obj_name)
        top = txn.conn.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0]
        if not top:
            return None
        sql = f'SELECT "Id" FROM {table} WHERE rowid >= ? AND {where} ORDER BY rowid LIMIT 1'
        row = txn.conn.execute(sql, (self.rng.randint(1, top),)).fetchone()
        return row[0] if row else None

    def _obj(self, name: str) -> Any:
        return self.org.schema.objects[name.lower()]

    # -- operations -------------------------------------------------------------------------------

    def create_lead(self, txn: Txn) -> bool:
        f = self.fake
        body = {
            "FirstName": f.first_name(),
            "LastName": f.last_name(),
            "Company": f.company(),
            "Email": f"{f.user_name()}{self.rng.randrange(10**6)}@{f.domain_name()}",
            "Phone": f.phone_number(),
            "City": f.city()[:40],
            "LeadSource": self.rng.choice(["Web", "Phone Inquiry", "Partner Referral", "Other"]),
            "OwnerId": self.rng.choice(self.owners),
        }
        self.org.save(txn, self._obj("Lead"), body)
        return True

    def update_lead(self, txn: Txn) -> bool:
        lead = self.pick(txn, "Lead", '"IsDeleted" = 0 AND "IsConverted" = 0')
        if lead is None:
            return False
        status = self.rng.choice(["Working - Contacted", "Open - Not Contacted", "Closed - Not Converted"])
        self.org.save(txn, self._obj("Lead"), {"Status": status, "Title": self.fake.job()[:128]}, lead)
        return True

    def update_contact(self, txn: Txn) -> bool:
        contact = self.pick(txn, "Contact")
        if contact is None:
            return False
        self.org.save(txn, self._obj("Contact"), {"Phone": self.fake.phone_number()}, contact)
        return True

    def log_task(self, txn: Txn) -> bool:
        who = self.pick(txn, self.rng.choice(["Lead", "Contact"]), '"IsDeleted" = 0')
        if who is None or (who.startswith("00Q") and self._converted(txn, who)):
            return False
        body = {
            "Subject": self.rng.choice(["Call", "Email", "Follow up"]),
            "WhoId": who,
            "Status": "Completed",
        }
        self.org.save(txn, self._obj("Task"), {**body, "ActivityDate": time.strftime("%Y-%m-%d")})
        return True

    def delete_lead(self, txn: Txn) -> bool:
        lead = self.pick(txn, "Lead", '"IsDeleted" = 0 AND "IsConverted" = 0')
        if lead is None:
            return False
        self.org.delete(txn, self._obj("Lead"), lead)
        return True

    def undelete(self, txn: Txn) -> bool:
        name = self.rng.choice(["Lead", "Contact"])
        record = self.pick(txn, name, '"IsDeleted" = 1 AND "MasterRecordId" IS NULL')
        if record is None:
            return False
        self.org.undelete(txn, self._obj(name), record)
        return True

    def merge_leads(self, txn: Txn) -> bool:
        return self._merge(txn, "Lead", '"IsDeleted" = 0 AND "IsConverted" = 0')

    def merge_contacts(self, txn: Txn) -> bool:
        return self._merge(txn, "Contact", '"IsDeleted" = 0')

    def _merge(self, txn: Txn, name: str, where: str) -> bool:
        master, duplicate = self.pick(txn, name, where), self.pick(txn, name, where)
        if master is None or duplicate is None or master == duplicate:
            return False
        self.org.merge(txn, self._obj(name), master, [duplicate])
        return True

    def convert_lead(self, txn: Txn) -> bool:
        lead = self.pick(txn, "Lead", '"IsDeleted" = 0 AND "IsConverted" = 0')
        if lead is None:
            return False
        self.org.convert_lead(txn, lead, create_opportunity=self.rng.random() < 0.5)
        return True

    def add_campaign_member(self, txn: Txn) -> bool:
        campaign, lead = (
            self.pick(txn, "Campaign"),
            self.pick(txn, "Lead", '"IsDeleted" = 0 AND "IsConverted" = 0'),
        )
        if campaign is None or lead is None:
            return False
        row = txn.conn.execute(
            'SELECT "Label" FROM "CampaignMemberStatus" WHERE "CampaignId" = ? AND "IsDeleted" = 0 '
            'ORDER BY "SortOrder" LIMIT 1',
            (campaign,),
        ).fetchone()
        body = {"CampaignId": campaign, "LeadId": lead, **({"Status": row[0]} if row else {})}
        self.org.save(txn, self._obj("CampaignMember"), body)
        return True

    @staticmethod
    def _converted(txn: Txn, lead: str) -> bool:
        row = txn.conn.execute('SELECT "IsConverted" FROM "Lead" WHERE "Id" = ?', (lead,)).fetchone()
        return bool(row and row[0])
