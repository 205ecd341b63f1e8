"""Merge and lead conversion: the record lifecycle operations that combine or turn records into others,
built on writes and the recycle bin as Salesforce's merge() and convertLead() are."""

from __future__ import annotations

from typing import Any

from .database import Database, Txn, quote
from .errors import SalesforceError
from .recyclebin import RecycleBin
from .schema import SObject, format_date
from .writes import Writes

MERGE_MAX_RECORDS = 3  # the master plus up to two duplicates, as in Salesforce's merge()


class Lifecycle:
    """Merges records and converts leads."""

    def __init__(self, db: Database, writes: Writes, recycle_bin: RecycleBin) -> None:
        self.db = db
        self.schema = db.schema
        self.writes = writes
        self.recycle_bin = recycle_bin

    def merge(self, txn: Txn, obj: SObject, master_id: str, duplicate_ids: list[str]) -> None:
        """Salesforce's merge: children of the duplicates move to the master; the duplicates go to the
        recycle bin with MasterRecordId pointing at the master."""
        if not obj.definition.has_master_record:
            raise SalesforceError(400, "INVALID_TYPE", f"Cannot merge records of type {obj.name}", [])
        if not duplicate_ids or len(duplicate_ids) + 1 > MERGE_MAX_RECORDS or master_id in duplicate_ids:
            raise SalesforceError(
                400, "INVALID_OPERATION", "A merge takes a master and one or two other records", []
            )
        self.db.before_write()
        self.writes.writable_row(txn, obj, master_id)
        for duplicate in duplicate_ids:
            old = self.writes.writable_row(txn, obj, duplicate)
            self._reparent(txn, obj, duplicate, master_id)
            self.writes.update(txn, obj, duplicate, {"MasterRecordId": master_id}, system=False)
            self.recycle_bin.soft_delete(txn, obj, duplicate, old)
        self.writes.update(txn, obj, master_id, {}, system=False)

    def _reparent(self, txn: Txn, obj: SObject, old_id: str, new_id: str) -> None:
        """Point every live reference to ``old_id`` at ``new_id``: an update of each child record."""
        for child in self.schema.objects.values():
            moved = False
            for f in child.fields.values():
                if f.system or f.type != "reference" or obj.name not in f.reference_to:
                    continue
                # A child that would duplicate one of the master's (a campaign membership) stays with
                # the duplicate and goes to the recycle bin with it, as in Salesforce.
                guards = _unique_guards(child, f.name)
                cur = txn.conn.execute(
                    f'UPDATE {quote(child.name)} SET {quote(f.name)} = ?, "LastModifiedDate" = ?, '
                    '"LastModifiedById" = ?, "SystemModstamp" = ? '
                    f'WHERE {quote(f.name)} = ? AND +"IsDeleted" = 0 AND "Id" != ?{"".join(guards)} '
                    'RETURNING "Id"',
                    (new_id, txn.ts, txn.user.id, txn.ts, old_id, new_id, *[new_id] * len(guards)),
                )
                written = {f.name: new_id, "LastModifiedDate": txn.ts}
                for (child_id,) in cur.fetchall():
                    self.db.changes.stage(txn, child, child_id, "UPDATE", written, written)
                    moved = True
            if moved and child.definition.activity:
                self.writes.roll_up_activity(txn, child, [{"WhoId": new_id, "WhatId": new_id}])

    def convert_lead(
        self,
        txn: Txn,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        create_opportunity: bool = True,
        opportunity_name: str | None = None,
        converted_status: str = "Closed - Converted",
    ) -> dict[str, str | None]:
        """Salesforce's convertLead: create (or reuse) the Account and Contact, optionally create an
        Opportunity, move the lead's activities and campaign memberships, and lock the lead."""
        objects = self.schema.objects
        lead_obj = objects["lead"]
        self.db.before_write()
        lead = self.writes.writable_row(txn, lead_obj, lead_id)
        status = lead_obj.fields["status"]
        if converted_status not in {v.value for v in status.picklist if v.active}:
            raise SalesforceError(400, "INVALID_STATUS", f"invalid convertedStatus: {converted_status}", [])
        values = _api_values(lead_obj, lead)
        owner = {"OwnerId": lead["OwnerId"]}
        if account_id is None:
            account_id = self.writes.save(
                txn, objects["account"], {**_mapped(values, _LEAD_TO_ACCOUNT), **owner}
            )
        else:
            self.writes.writable_row(txn, objects["account"], account_id)
        if contact_id is None:
            body = {**_mapped(values, _LEAD_TO_CONTACT), "AccountId": account_id, **owner}
            contact_id = self.writes.save(txn, objects["contact"], body)
        elif self.writes.writable_row(txn, objects["contact"], contact_id)["AccountId"] != account_id:
            raise SalesforceError(
                400, "INVALID_CROSS_REFERENCE_KEY", "The contact is not associated with the account", []
            )
        opportunity_id = None
        if create_opportunity:
            opportunity = {
                **_mapped(values, {"LeadSource": "LeadSource"}),
                "Name": opportunity_name or f"{values['Company']}-",
                "AccountId": account_id,
                "StageName": objects["opportunity"].fields["stagename"].picklist[0].value,
                "CloseDate": format_date(txn.ts),
                **owner,
            }
            opportunity_id = self.writes.save(txn, objects["opportunity"], opportunity)
            role = {"OpportunityId": opportunity_id, "ContactId": contact_id, "IsPrimary": True}
            self.writes.save(txn, objects["opportunitycontactrole"], role)
        converted = {
            "IsConverted": 1,
            "ConvertedDate": format_date(txn.ts),
            "ConvertedAccountId": account_id,
            "ConvertedContactId": contact_id,
            "ConvertedOpportunityId": opportunity_id,
            "Status": converted_status,
        }
        self.writes.update(txn, lead_obj, lead_id, converted, system=False)
        self._move_converted(txn, lead_id, contact_id, opportunity_id or account_id)
        return {"accountId": account_id, "contactId": contact_id, "opportunityId": opportunity_id}

    def _move_converted(self, txn: Txn, lead_id: str, contact_id: str, what_id: str) -> None:
        """The lead's open activities move to the contact; its campaign memberships gain the contact."""
        stamp = '"LastModifiedDate" = ?, "LastModifiedById" = ?, "SystemModstamp" = ?'
        for act in (o for o in self.schema.objects.values() if o.definition.activity):
            moved = txn.conn.execute(
                f'UPDATE {quote(act.name)} SET "WhoId" = ?, "WhatId" = COALESCE("WhatId", ?), {stamp} '
                'WHERE "WhoId" = ? AND +"IsDeleted" = 0 RETURNING "Id", "WhatId"',
                (contact_id, what_id, txn.ts, txn.user.id, txn.ts, lead_id),
            ).fetchall()
            for activity_id, what in moved:
                written = {"WhoId": contact_id, "WhatId": what, "LastModifiedDate": txn.ts}
                self.db.changes.stage(txn, act, activity_id, "UPDATE", written, written)
            self.writes.roll_up_activity(
                txn, act, [{"WhoId": lead_id}, {"WhoId": contact_id, "WhatId": what_id}]
            )
        member = self.schema.objects.get("campaignmember")
        if member is not None:
            # Where the contact is already in the campaign, its membership is kept and the lead's is left.
            guards = _unique_guards(member, "ContactId")
            members = txn.conn.execute(
                f'UPDATE "CampaignMember" SET "ContactId" = ?, {stamp} '
                f'WHERE "LeadId" = ? AND "ContactId" IS NULL AND +"IsDeleted" = 0{"".join(guards)} '
                'RETURNING "Id"',
                (contact_id, txn.ts, txn.user.id, txn.ts, lead_id, *[contact_id] * len(guards)),
            ).fetchall()
            written = {"ContactId": contact_id, "LastModifiedDate": txn.ts}
            for (member_id,) in members:
                self.db.changes.stage(txn, member, member_id, "UPDATE", written, written)


_LEAD_TO_ACCOUNT = {
    "Company": "Name",
    "Industry": "Industry",
    "AnnualRevenue": "AnnualRevenue",
    "NumberOfEmployees": "NumberOfEmployees",
    "Phone": "Phone",
    "Website": "Website",
    "Street": "BillingStreet",
    "City": "BillingCity",
    "State": "BillingState",
    "PostalCode": "BillingPostalCode",
    "Country": "BillingCountry",
}
_LEAD_TO_CONTACT = {
    **{
        name: name
        for name in (
            *("Salutation", "FirstName", "LastName", "Title", "Email", "Phone", "MobilePhone"),
            *("LeadSource", "HasOptedOutOfEmail", "DoNotCall", "Description"),
        )
    },
    "Street": "MailingStreet",
    "City": "MailingCity",
    "State": "MailingState",
    "PostalCode": "MailingPostalCode",
    "Country": "MailingCountry",
}


def _mapped(values: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Lead values renamed for the records a conversion creates (Salesforce's standard field mapping)."""
    return {target: values[source] for source, target in mapping.items() if values.get(source) is not None}


def _unique_guards(obj: SObject, field_name: str) -> list[str]:
    """SQL conditions on an UPDATE of ``obj``, one ``?`` each (the new value of ``field_name``), that
    hold when the new value keeps every unique key with that field unique."""
    table = quote(obj.name)
    return [
        f' AND NOT EXISTS (SELECT 1 FROM {table} k WHERE k.{quote(field_name)} = ? AND +k."IsDeleted" = 0'
        + "".join(f" AND k.{quote(n)} = {table}.{quote(n)}" for n in key.fields if n != field_name)
        + ")"
        for key in obj.definition.unique_keys
        if field_name in key.fields
    ]


def _api_values(obj: SObject, row: dict[str, Any]) -> dict[str, Any]:
    """Stored values as the API shows them (what ``save`` accepts)."""
    out = {}
    for name, value in row.items():
        f = obj.field(name)
        decode = f.decoder() if f is not None else None
        out[name] = decode(value) if decode is not None else value
    return out
