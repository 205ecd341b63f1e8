"""Sharing: which records each user may see (org-wide defaults, the role hierarchy, sharing rules, objects
controlled by their parent), as SQL conditions that reads and writes add to their statements."""

from __future__ import annotations

import sqlite3
from typing import Any

from .database import User, quote
from .orgdef import OrgDef
from .schema import Schema, SObject


class Sharing:
    """The org's sharing model for its users, computed once at start."""

    def __init__(self, definition: OrgDef, schema: Schema, users: dict[str, User]) -> None:
        self.definition = definition
        self.schema = schema
        self.users = users
        self._owners = self._sharing()

    def _sharing(self) -> dict[tuple[str, str], frozenset[str] | None]:
        """For each (user Id, object): the owners whose records the user sees, or None for all."""
        parents = {r.name: r.parent for r in self.definition.roles}

        def below(role: str) -> set[str]:
            found = {role}
            changed = True
            while changed:
                more = {r for r, p in parents.items() if p in found} - found
                found |= more
                changed = bool(more)
            return found

        def owners_in(roles: set[str]) -> set[str]:
            return {u.id for u in self.users.values() if u.role in roles}

        result: dict[tuple[str, str], frozenset[str] | None] = {}
        for user in self.users.values():
            for obj in self.schema.objects.values():
                default = self.definition.org_wide_defaults.get(obj.name, "public_read_write")
                if self.views_all(user, obj) or not obj.owned or default != "private":
                    result[(user.id, obj.name)] = None
                    continue
                # The role hierarchy: users see records owned by roles below their own.
                owners = {user.id} | owners_in(below(user.role) - {user.role})
                for rule in self.definition.sharing_rules:
                    if obj.name in rule.objects and rule.shared_with_role == user.role:
                        roles = (
                            below(rule.owned_by_role) if rule.include_subordinates else {rule.owned_by_role}
                        )
                        owners |= owners_in(roles)
                result[(user.id, obj.name)] = frozenset(owners)
        return result

    def visibility(self, user: User, obj: SObject, alias: str) -> tuple[str, list[Any]]:
        """A SQL condition (and its parameters) true for the records of ``obj`` the user may see."""
        if obj.definition.controlled_by is not None:
            ref = obj.field(obj.definition.controlled_by)
            assert ref is not None
            parent = self.schema.objects[ref.reference_to[0].lower()]
            inner_alias = f"{alias}_cb"
            cond, params = self.visibility(user, parent, inner_alias)
            if cond == "1":
                return "1", []
            sql = (
                f'{alias}.{quote(ref.name)} IN (SELECT {inner_alias}."Id" FROM {quote(parent.name)} '
                f"{inner_alias} WHERE {cond})"
            )
            return sql, params
        owners = self._owners[(user.id, obj.name)]
        if owners is None:
            return "1", []
        return f'{alias}."OwnerId" IN ({", ".join("?" * len(owners))})', sorted(owners)

    def is_visible(self, conn: sqlite3.Connection, user: User, obj: SObject, record_id: str) -> bool:
        """Whether the user may see the record (deleted or not)."""
        cond, params = self.visibility(user, obj, "t")
        sql = f'SELECT 1 FROM {quote(obj.name)} t WHERE t."Id" = ? AND {cond}'
        return conn.execute(sql, (record_id, *params)).fetchone() is not None

    def views_all(self, user: User, obj: SObject) -> bool:
        """Whether the user has "View All Data" or the object's "View All" permission."""
        profile = next(p for p in self.definition.profiles if p.name == user.profile)
        return user.view_all or obj.name in profile.view_all_objects

    def can_hard_delete(self, user: User) -> bool:
        """Whether the user's profile has the Bulk API Hard Delete permission."""
        return any(p.name == user.profile and p.bulk_api_hard_delete for p in self.definition.profiles)
