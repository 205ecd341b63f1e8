"""The org: its SQLite store (``database``) with each concern's collaborator built on it, and the operations
the server, the tools and the tests call, each delegated to the collaborator that owns it.

- ``sharing``: which records each user sees;
- ``writes`` (with ``validation``): inserts and updates through Salesforce's checks;
- ``recyclebin``: delete, undelete, hard delete, purge and the deleted/ feed;
- ``lifecycle``: merge and lead conversion;
- ``usage``: the API request count and the count of change events delivered;
- ``changes`` (on the database, which every write transaction publishes through): Change Data Capture;
- ``seed``: records written straight into the store, for benchmarks and demos.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .database import Database, Txn, User, quote, untrack_sqlite_memory
from .lifecycle import Lifecycle
from .orgdef import OrgDef
from .recyclebin import RecycleBin
from .sharing import Sharing
from .usage import Usage
from .validation import Validator
from .writes import Writes

__all__ = ["Org", "Txn", "User", "quote", "untrack_sqlite_memory"]


class Org(Database):
    """The org: schema, users and the SQLite store, with sharing, writes, the recycle bin, merge and lead
    conversion, and API usage."""

    def __init__(self, data_dir: Path, definition: OrgDef) -> None:
        super().__init__(data_dir, definition)
        self.sharing = Sharing(definition, self.schema, self.users)
        self.writes = Writes(self, self.sharing, Validator(self.schema, self.sharing))
        self.recycle_bin = RecycleBin(self, self.sharing, self.writes)
        self.lifecycle = Lifecycle(self, self.writes, self.recycle_bin)
        self.usage = Usage(self, "_api_requests")
        self.deliveries = Usage(self, "_delivered_events")
        # The operations callers use, from the collaborator that owns each.
        self.visibility = self.sharing.visibility
        self.is_visible = self.sharing.is_visible
        self.can_hard_delete = self.sharing.can_hard_delete
        self.check_fields = self.writes.check_fields
        self.save = self.writes.save
        self.upsert = self.writes.upsert
        self.delete = self.recycle_bin.delete
        self.undelete = self.recycle_bin.undelete
        self.hard_delete = self.recycle_bin.hard_delete
        self.purge = self.recycle_bin.purge
        self.purge_expired = self.recycle_bin.purge_expired
        self.deleted_records = self.recycle_bin.deleted_records
        self.was_purged = self.recycle_bin.was_purged
        self.earliest_deleted_available = self.recycle_bin.earliest_deleted_available
        self.merge = self.lifecycle.merge
        self.convert_lead = self.lifecycle.convert_lead
        self.count_api_request = self.usage.count
        self.api_usage = self.usage.used

    def seed(
        self,
        obj_name: str,
        records: Iterable[dict[str, Any]],
        owner: str,
        chunk: int = 10_000,
        at: int | None = None,
    ) -> int:
        """Insert records straight into the store: see ``seed.insert_records``."""
        from .seed import insert_records  # seed loads Faker, which serving the org does not need

        return insert_records(self, obj_name, records, owner, chunk, at)
