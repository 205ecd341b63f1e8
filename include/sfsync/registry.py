"""The object registry: which Salesforce objects are synced, and how.

``objects.yaml`` beside this module is the default; ``SFSYNC_REGISTRY`` names another file. Every entry is
validated when the DAGs are parsed, and a bad entry stops parsing with a message that names the file, the
entry and the problem, so a typo never becomes a silently skipped object. Field names can only be checked
against Salesforce: ``columns.check_fields`` does it on every run, after the describe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Iterator
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sfsync.defaults import SYNC_SCHEDULE

DEFAULT_REGISTRY = Path(__file__).with_name("objects.yaml")

#: Objects whose warehouse edits are written back to Salesforce (Marketo's bidirectional set).
BIDIRECTIONAL_OBJECTS = frozenset({"Lead", "Contact", "Campaign", "CampaignMember"})

#: Standard objects the sync knows; anything else must be a custom object (``__c``).
STANDARD_OBJECTS = BIDIRECTIONAL_OBJECTS | frozenset(
    """
    Account AccountContactRelation Asset CampaignMemberStatus Case CaseComment Contract Event
    EventRelation Lead LeadHistory Opportunity OpportunityContactRole OpportunityHistory
    OpportunityLineItem Order OrderItem Pricebook2 PricebookEntry Product2 Quote QuoteLineItem
    RecordType Task TaskRelation User UserRole
    """.split()
)

CUSTOM_OBJECT = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")
API_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
FieldName = Annotated[str, Field(pattern=API_NAME)]
Side = Literal["warehouse", "salesforce"]

#: Who wins when one field changed on both sides since the last sync, unless the registry says otherwise:
#: Marketo's rules (the warehouse for Lead, Salesforce for Contact); Salesforce owns campaigns.
DEFAULT_WINNERS: dict[str, Side] = {
    "Lead": "warehouse",
    "Contact": "salesforce",
    "Campaign": "salesforce",
    "CampaignMember": "salesforce",
}


class RegistryError(ValueError):
    """The registry file is missing, unreadable or has an invalid entry."""


class UnknownFieldError(RegistryError):
    """A registry entry names fields its object does not have: found at run time, against the describe.

    ``fields`` holds the names as the registry spells them; the message has one line per name.
    """

    def __init__(self, sobject: str, fields: list[str], problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.sobject = sobject
        self.fields = tuple(fields)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice.

    PyYAML keeps the last value of a repeated key, so a second ``objects:`` would silently drop every entry
    above it; YAML itself requires unique keys, so the file is reported as not valid YAML.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            # Merge keys ('<<: *defaults') may be overridden by the mapping's own keys, as YAML intends.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # the SafeLoader reports an unhashable key below
            if (earlier := first.get(key)) is None:
                first[key] = key_node.start_mark
                continue
            where = f"line {earlier.line + 1}"
            if earlier.line == key_node.start_mark.line:  # a flow mapping: the line alone is no help
                where += f", column {earlier.column + 1}"
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on {where})", key_node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


class ConflictRules(BaseModel):
    """Which side wins a field changed on both sides since the last sync: per object, then per field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    winner: Side | None = None
    fields: dict[FieldName, Side] = {}

    @field_validator("fields")
    @classmethod
    def _one_rule_per_field(cls, fields: dict[str, Side]) -> dict[str, Side]:
        # YAML sees 'Email' and 'email' as two keys, but ``winner`` matches either: the last would win.
        first: dict[str, str] = {}
        for name in fields:
            if (earlier := first.setdefault(name.lower(), name)) != name:
                raise ValueError(f"{earlier!r} and {name!r} name the same field (field names ignore case)")
        return fields


class SyncObject(BaseModel):
    """One synced Salesforce object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sobject: str = Field(pattern=API_NAME)
    direction: Literal["bidirectional", "inbound"]
    enabled: bool = True
    cursor_field: Literal["SystemModstamp", "LastModifiedDate"] = "SystemModstamp"
    fields: Literal["all"] | tuple[FieldName, ...] = "all"
    exclude: tuple[FieldName, ...] = ()
    #: Above this many records a read or a write-back goes through Bulk API 2.0 instead of REST calls.
    bulk_threshold: int = Field(default=2000, ge=1)
    #: Records per REST page (Salesforce's ``batchSize``, 200 to 2000).
    page_size: int = Field(default=2000, ge=200, le=2000)
    #: Whether deleting a warehouse row deletes the record in Salesforce (else the delete is refused).
    allow_delete: bool = False
    #: Conflict rules for write-back (bidirectional objects only); unset means ``DEFAULT_WINNERS``.
    conflicts: ConflictRules = ConflictRules()
    #: When the object's DAG runs: a cron expression or preset (runs never overlap).
    schedule: str = SYNC_SCHEDULE
    #: Also run within seconds of a change, on events: Salesforce's change events for the object (Change
    #: Data Capture must be enabled for it, and the subscribing user, ``salesforce_events`` or else
    #: ``salesforce_default``, needs View All on it) and, for a bidirectional object, warehouse edits. The
    #: schedule stays, as the safety net; runs never overlap.
    events: bool = False

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        return _valid_cron(schedule)

    @field_validator("sobject")
    @classmethod
    def _known_object(cls, sobject: str) -> str:
        if sobject not in STANDARD_OBJECTS and not CUSTOM_OBJECT.match(sobject):
            raise ValueError(
                f"unknown Salesforce object {sobject!r}: not a standard object the sync supports, "
                "and custom objects end in '__c' (API names are case-sensitive)"
            )
        return sobject

    @model_validator(mode="after")
    def _consistent(self) -> SyncObject:
        if self.direction == "bidirectional" and self.sobject not in BIDIRECTIONAL_OBJECTS:
            raise ValueError(
                f"direction 'bidirectional' is only allowed for {', '.join(sorted(BIDIRECTIONAL_OBJECTS))}; "
                f"{self.sobject} syncs 'inbound' (Salesforce to warehouse)"
            )
        if self.allow_delete and self.direction != "bidirectional":
            raise ValueError(
                "allow_delete needs direction 'bidirectional': only those objects are written back"
            )
        if self.conflicts != ConflictRules() and self.direction != "bidirectional":
            raise ValueError("conflicts needs direction 'bidirectional': only those objects are written back")
        if self.fields != "all":
            if "Id" not in self.fields or self.cursor_field not in self.fields:
                raise ValueError(f"a field list must include Id and the cursor field {self.cursor_field}")
            if clash := set(self.fields) & set(self.exclude):
                raise ValueError(f"fields both listed and excluded: {', '.join(sorted(clash))}")
        if protected := {"Id", "IsDeleted", self.cursor_field} & set(self.exclude):
            raise ValueError(f"cannot exclude {', '.join(sorted(protected))}: the sync needs them")
        return self

    @property
    def table(self) -> str:
        """The warehouse table (and DAG id suffix): the lower-cased API name."""
        return self.sobject.lower()

    @property
    def dag_id(self) -> str:
        return f"sf_sync__{self.table}"

    def winner(self, field: str) -> Side:
        """The side whose value a field keeps when both changed it (field names are case-insensitive)."""
        by_field = {name.lower(): side for name, side in self.conflicts.fields.items()}
        return by_field.get(field.lower()) or self.conflicts.winner or DEFAULT_WINNERS[self.sobject]


def _valid_cron(expression: str) -> str:
    from airflow.exceptions import AirflowTimetableInvalid
    from airflow.timetables.trigger import CronTriggerTimetable

    try:
        CronTriggerTimetable(expression, timezone="UTC").validate()
    except AirflowTimetableInvalid as error:
        raise ValueError(f"{expression!r} is not a cron expression: {error}") from None
    return expression


class SyncSettings(BaseModel):
    """Settings shared by every object (the ``settings:`` block of the registry file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Each window starts this long before the last one ended: a transaction that committed late carries
    #: a SystemModstamp from before it became visible, and the lookback catches it on the next run.
    lookback_seconds: int = Field(default=300, ge=0)
    #: Above this share of the org's daily API limit, runs skip extraction instead of spending the rest.
    api_budget_share: float = Field(default=0.8, gt=0, le=1)
    #: How often every Id is compared with Salesforce, to flag hard-deleted and purged records.
    reconcile_every_hours: float = Field(default=24, gt=0)
    #: Salesforce requires both on a Lead; like Marketo, they fill empty values on a Lead's first push only.
    lead_default_last_name: str = Field(default="[not provided]", min_length=1)
    lead_default_company: str = Field(default="[not provided]", min_length=1)
    #: An external Id field (unique, on each bidirectional object) holding the warehouse row's key. Where the
    #: integration user can write it, inserts are upserts on it: a push retried after a crash finds the
    #: record it already created instead of creating a twin, and Bulk results are matched back by it.
    warehouse_id_field: str = Field(default="Warehouse_Id__c", pattern=API_NAME)
    #: Transient write-back failures are retried after this delay, doubled on each failure up to the cap.
    retry_after_seconds: int = Field(default=60, ge=0)
    retry_cap_seconds: int = Field(default=3600, ge=0)
    #: No task runs longer than this (Airflow's execution_timeout, retried like any failure); a full-load
    #: slice, which may copy millions of records, has its own.
    task_timeout_minutes: float = Field(default=30, gt=0)
    slice_timeout_minutes: float = Field(default=240, gt=0)
    #: About the most records one full-load Bulk job copies (a tenth more rather than one job more): an
    #: object with more is cut into slices of about equal size, copied in parallel. A million records (a few
    #: GB of CSV at most) stream in well within a slice's time limit, and cost about 4 calls (create, poll,
    #: a page or two): API calls grow with the records, not with the years of history. A failed slice
    #: copies at most this many again.
    full_load_job_records: int = Field(default=1_000_000, ge=1)
    #: The data interval of each backfill run of the full load: a cron expression or preset (``@monthly``,
    #: ``@weekly``, ``@daily``). Each run describes and counts every object (a call per five objects), so
    #: fewer, longer intervals cost fewer calls; objects with nothing created in a run's interval are skipped.
    full_load_interval: str = "@monthly"
    #: The status page's colours: an object is late, then failing, once its watermark is this far behind
    #: Salesforce, or once this many record errors are open; late too once a warehouse change has waited
    #: this long for its push.
    lag_late_minutes: float = Field(default=15, gt=0)
    lag_failing_minutes: float = Field(default=60, gt=0)
    errors_late: int = Field(default=1, ge=1)
    errors_failing: int = Field(default=100, ge=1)
    backlog_late_minutes: float = Field(default=30, gt=0)
    #: An event-driven wake (registry ``events``) waits this long after the first change for the ones that
    #: follow, so a burst of changes wakes its DAG once.
    events_debounce_seconds: float = Field(default=2.0, ge=0, le=60)
    #: Run history (runs, decided conflicts, status-page actions) is kept this long; the sync prunes it.
    run_history_days: float = Field(default=30, gt=0)
    #: Alerts: when an object's lag or its open errors reach these, the notifier is called once, with a
    #: message naming the object and the cause (``{{ sfsync_alert }}`` in the notifier's templated fields),
    #: and again only after the cause went away and came back. The notifier is an Airflow notifier class
    #: (e.g. ``airflow.providers.slack.notifications.slack.SlackNotifier``) and its arguments.
    alert_lag_minutes: float | None = Field(default=None, gt=0)
    alert_open_errors: int | None = Field(default=None, ge=1)
    alert_notifier: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")
    alert_notifier_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("full_load_interval")
    @classmethod
    def _cron(cls, interval: str) -> str:
        return _valid_cron(interval)

    @property
    def alerting(self) -> bool:
        return self.alert_lag_minutes is not None or self.alert_open_errors is not None

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> SyncSettings:
        if self.lag_failing_minutes <= self.lag_late_minutes:
            raise ValueError("lag_failing_minutes must be above lag_late_minutes")
        if self.errors_failing < self.errors_late:
            raise ValueError("errors_failing must be at least errors_late")
        return self

    @property
    def warehouse_key_column(self) -> str:
        """The warehouse column of ``warehouse_id_field``."""
        return self.warehouse_id_field.lower()

    @property
    def bulk_deadline(self) -> timedelta:
        """How long a task waits for a Bulk job: long enough to abort it before the task itself times out."""
        return timedelta(minutes=self.task_timeout_minutes * 0.8)

    @property
    def slice_bulk_deadline(self) -> timedelta:
        return timedelta(minutes=self.slice_timeout_minutes * 0.8)


class Registry(BaseModel):
    """Every synced object, in file order, and the shared settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    settings: SyncSettings = SyncSettings()
    objects: tuple[SyncObject, ...]

    @model_validator(mode="after")
    def _unique(self) -> Registry:
        first: dict[str, int] = {}
        for number, entry in enumerate(self.objects, start=1):
            if entry.table in first:
                raise ValueError(
                    f"{entry.sobject} is listed twice (entries {first[entry.table]} and {number})"
                )
            first[entry.table] = number
        return self

    def enabled(self) -> Iterator[SyncObject]:
        """The enabled entries, sorted by table name so DAGs are always built in the same order."""
        return iter(sorted((e for e in self.objects if e.enabled), key=lambda e: e.table))

    def get(self, sobject: str) -> SyncObject:
        for entry in self.objects:
            if entry.sobject.lower() == sobject.lower():
                return entry
        raise KeyError(f"{sobject} is not in the registry")


def load_registry(path: Path | str | None = None) -> Registry:
    """Read and validate a registry file (default: ``SFSYNC_REGISTRY`` or ``objects.yaml``)."""
    path = Path(path or os.environ.get("SFSYNC_REGISTRY") or DEFAULT_REGISTRY)
    return _load(path.resolve())


@cache
def _load(path: Path) -> Registry:
    try:
        document = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the registry: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise RegistryError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    try:
        return Registry.model_validate(document)
    except ValidationError as error:
        raise RegistryError(_describe(path, document, error)) from None


def _describe(path: Path, document: object, error: ValidationError) -> str:
    """Turn pydantic's errors into one line per problem, naming the entry by its position and sobject."""
    entries = document.get("objects") if isinstance(document, dict) else None
    lines: dict[tuple[str, str], str] = {}
    for problem in error.errors():
        location, where = list(problem["loc"]), "registry"
        if location[:1] == ["objects"] and len(location) > 1 and isinstance(location[1], int):
            index = location[1]
            raw = entries[index] if isinstance(entries, list) and index < len(entries) else None
            name = raw.get("sobject") if isinstance(raw, dict) else None
            where = f"entry {index + 1}" + (f" ({name})" if name else "")
            location = location[2:]
        # Union members (fields: 'all' | list) add their type names to the location: keep real keys and items.
        keys = [str(part) for part in location if isinstance(part, int) or re.fullmatch(r"\w+", str(part))]
        if problem["type"] == "extra_forbidden":
            message = f"unknown key {keys[-1]!r}"
        elif problem["type"] == "missing":
            message = f"missing key {keys[-1]!r}"
        elif problem["type"] == "literal_error" and keys == ["fields"] and len(location) > 1:
            continue  # the list branch of the union explains the problem better
        else:
            detail = problem["msg"].removeprefix("Value error, ")
            if keys and keys[-1].isdigit():
                keys[-1] = f"item {int(keys[-1]) + 1} {problem['input']!r}"
            message = f"{' '.join(keys)}: {detail}" if keys else detail
        lines.setdefault((where, message), f"{path}: {where}: {message}")
    return "\n".join(lines.values())
