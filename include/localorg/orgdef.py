"""The org definition (``org.yaml``): objects, fields, profiles, roles, users and sharing.

Validated with pydantic (unknown keys are errors) plus cross-reference checks, so a typo in the
definition fails at startup instead of turning into a silently different org.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_ORG_FILE = Path(__file__).with_name("org.yaml")

FieldType = Literal[
    "reference",
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "email",
    "phone",
    "url",
    "boolean",
    "int",
    "double",
    "currency",
    "percent",
    "date",
    "datetime",
    "address",
    "location",
]
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
# What deleting the referenced record does to a reference (Salesforce's "What to do if the lookup record
# is deleted?"): clear the field, refuse the delete (DELETE_FAILED), or delete this record too.
OnDelete = Literal["clear", "restrict", "cascade"]
COMPOUND_TYPES = frozenset({"address", "location"})
_ADDRESS_PARTS = "City Country GeocodeAccuracy Latitude Longitude PostalCode State Street".split()


def components(name: str, type_: str) -> dict[str, str]:
    """The component fields of a compound field, keyed as its REST value names them (in that order).

    Salesforce names them after the compound: BillingAddress -> BillingCity..., Address -> City...;
    a geolocation Location__c -> Location__Latitude__s, Location__Longitude__s."""
    if type_ == "address":
        prefix = name.removesuffix("Address")
        return {part[0].lower() + part[1:]: prefix + part for part in _ADDRESS_PARTS}
    if type_ == "location":
        base = name.removesuffix("__c")
        return {"latitude": f"{base}__Latitude__s", "longitude": f"{base}__Longitude__s"}
    return {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PicklistValue(_Strict):
    value: str
    label: str | None = None
    active: bool = True
    default: bool = False


class FieldDef(_Strict):
    """A declared field; system fields (Id, CreatedDate, OwnerId, ...) are added by the schema."""

    name: str = Field(pattern=_NAME)
    type: FieldType
    label: str | None = None
    length: int | None = Field(default=None, gt=0)
    precision: int | None = Field(default=None, gt=0)
    scale: int | None = Field(default=None, ge=0)
    required: bool = False
    read_only: bool = False
    unique: bool = False
    external_id: bool = False
    reference_to: list[str] = []
    relationship_name: str | None = None
    # Default as in Salesforce: an optional lookup is cleared; a required one cannot be, so it restricts.
    on_delete: OnDelete | None = None
    # Whether undeleting the referenced record puts back a value its deletion cleared. Salesforce does this
    # for custom lookups and a few standard ones (Account.ParentId, Contact.ReportsToId); default: custom.
    undelete_restores: bool | None = None
    values: list[PicklistValue] = []
    restricted: bool = False
    default: str | bool | int | float | None = None
    formula: str | None = None
    # Fields such as Lead.Name are computed by Salesforce but describe as plain read-only fields.
    derived: bool = False

    @model_validator(mode="after")
    def _check(self) -> FieldDef:
        if self.type == "reference" and not self.reference_to:
            raise ValueError(f"{self.name}: a reference needs reference_to")
        reference_only = (self.reference_to, self.relationship_name, self.on_delete, self.undelete_restores)
        if self.type != "reference" and any(v not in (None, []) for v in reference_only):
            raise ValueError(
                f"{self.name}: reference_to/relationship_name/on_delete/undelete_restores need type reference"
            )
        if self.required and self.on_delete == "clear":
            raise ValueError(f"{self.name}: a required reference cannot be cleared on delete")
        if self.type in ("picklist", "multipicklist") and not self.values:
            raise ValueError(f"{self.name}: a picklist needs values")
        if self.restricted and self.type not in ("picklist", "multipicklist"):
            raise ValueError(f"{self.name}: only picklists can be restricted")
        if self.formula is not None and (self.required or self.default is not None or self.external_id):
            raise ValueError(f"{self.name}: a formula field cannot be required, defaulted or an external id")
        if self.derived and self.formula is None:
            raise ValueError(f"{self.name}: derived needs a formula")
        if self.type in COMPOUND_TYPES:
            suffix = "Address" if self.type == "address" else "__c"
            if not self.name.endswith(suffix):
                raise ValueError(f"{self.name}: the name of a {self.type} field ends with {suffix}")
            if set(self.model_fields_set) - {"name", "type", "label"}:
                raise ValueError(f"{self.name}: a compound field has only a name and a label")
        return self


class ValidationRule(_Strict):
    """A Salesforce validation rule: the record is rejected when ``condition`` is true."""

    name: str = Field(pattern=_NAME)
    condition: str
    message: str
    field: str | None = None


class UniqueKey(_Strict):
    """No two live records may share these fields' values (a null never clashes): DUPLICATE_VALUE."""

    fields: list[str]
    message: str


class ObjectDef(_Strict):
    name: str = Field(pattern=_NAME)
    label: str
    label_plural: str
    key_prefix: str = Field(pattern=r"^[0-9A-Za-z]{3}$")
    owned: bool = True
    has_master_record: bool = False
    # Objects without an owner take their visibility from this parent reference (Salesforce's
    # "controlled by parent").
    controlled_by: str | None = None
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    # Task and Event: saving one moves LastActivityDate (and SystemModstamp) of its Who/What records.
    activity: bool = False
    # Groups of fields of which at least one must be set (CampaignMember: LeadId or ContactId).
    require_one_of: list[list[str]] = []
    unique_keys: list[UniqueKey] = []
    fields: list[FieldDef]
    validation_rules: list[ValidationRule] = []

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @model_validator(mode="after")
    def _check(self) -> ObjectDef:
        names = [f.name.lower() for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.name}: duplicate field names")
        if any(set(n.lower() for n in key.fields) - set(names) for key in self.unique_keys):
            raise ValueError(f"{self.name}: a unique key names an unknown field")
        if not self.owned and self.controlled_by is None and self.name != "User":
            raise ValueError(f"{self.name}: an object without owner needs controlled_by")
        for f in self.fields:
            parts = components(f.name, f.type).values()
            if {n.lower() for n in parts} - set(names):
                raise ValueError(f"{self.name}.{f.name}: declare its components {', '.join(parts)}")
        return self


class Role(_Strict):
    name: str
    parent: str | None = None


class Profile(_Strict):
    name: str
    view_all_data: bool = False
    # Salesforce's "Bulk API Hard Delete" permission: needed to create Bulk hardDelete jobs.
    bulk_api_hard_delete: bool = False
    # Field-level security: fields this profile cannot see, by object.
    hidden_fields: dict[str, list[str]] = {}


class UserDef(_Strict):
    username: str
    password: str
    security_token: str
    first_name: str
    last_name: str
    email: str
    alias: str
    profile: str
    role: str


class SharingRule(_Strict):
    """Records owned by users in ``owned_by_role`` (and below it, if asked) are shared with a role."""

    name: str
    objects: list[str]
    owned_by_role: str
    include_subordinates: bool = False
    shared_with_role: str


class ConnectedApp(_Strict):
    name: str
    consumer_key: str
    consumer_secret: str
    run_as: str


class Settings(_Strict):
    org_name: str = "Local Org"
    session_timeout_seconds: int = Field(default=7200, gt=0)
    daily_api_requests: int = Field(default=15000, gt=0)


class OrgDef(_Strict):
    settings: Settings = Settings()
    roles: list[Role]
    profiles: list[Profile]
    users: list[UserDef]
    # Org-wide defaults: objects not listed here are Public Read/Write.
    org_wide_defaults: dict[str, Literal["private", "public_read", "public_read_write"]] = {}
    sharing_rules: list[SharingRule] = []
    connected_apps: list[ConnectedApp] = []
    objects: list[ObjectDef]

    @model_validator(mode="after")
    def _check_references(self) -> OrgDef:
        roles = {r.name for r in self.roles}
        profiles = {p.name for p in self.profiles}
        objects = {o.name: o for o in self.objects}
        usernames = {u.username for u in self.users}
        for role in self.roles:
            if role.parent is not None and role.parent not in roles:
                raise ValueError(f"role {role.name}: unknown parent {role.parent}")
        for user in self.users:
            if user.profile not in profiles or user.role not in roles:
                raise ValueError(f"user {user.username}: unknown profile or role")
        for rule in self.sharing_rules:
            if {rule.owned_by_role, rule.shared_with_role} - roles or set(rule.objects) - set(objects):
                raise ValueError(f"sharing rule {rule.name}: unknown role or object")
        for app in self.connected_apps:
            if app.run_as not in usernames:
                raise ValueError(f"connected app {app.name}: unknown run_as user")
        for name in self.org_wide_defaults:
            if name not in objects:
                raise ValueError(f"org_wide_defaults: unknown object {name}")
        for profile in self.profiles:
            for obj_name, fields in profile.hidden_fields.items():
                known = {f.name for f in objects[obj_name].fields} if obj_name in objects else None
                if known is None or set(fields) - known:
                    raise ValueError(f"profile {profile.name}: unknown hidden field on {obj_name}")
                # Salesforce sets field-level security on an address or geolocation as a whole.
                parts = {c for f in objects[obj_name].fields for c in components(f.name, f.type).values()}
                if set(fields) & parts:
                    raise ValueError(f"profile {profile.name}: hide the compound field, not its components")
        if "User" not in objects:
            raise ValueError("the org needs a User object")
        for obj in self.objects:
            for f in obj.fields:
                if set(f.reference_to) - set(objects):
                    raise ValueError(f"{obj.name}.{f.name}: unknown reference_to {f.reference_to}")
        return self

    def user(self, username: str) -> UserDef:
        """The declared user with this username (KeyError if none)."""
        for user in self.users:
            if user.username == username:
                return user
        raise KeyError(username)


def load_org(path: Path = DEFAULT_ORG_FILE) -> OrgDef:
    """Read and validate an org definition file."""
    return OrgDef.model_validate(yaml.safe_load(path.read_text()))
