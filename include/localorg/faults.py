"""Fault injection: rules, set at run time through ``/localorg/admin/faults`` or the CLI, that make
matching API requests slow or fail the way Salesforce (and the load balancers in front of it) do.

A rule matches requests whose path contains a match of ``route`` (a regular expression; empty
matches everything) and, if given, whose ``method`` is the same. It then fires with ``probability``
(default 1); with ``count`` it fires on the next ``count`` matches only and then retires, so a test
that gives a count gets the same faults on every run.
"""

from __future__ import annotations

import contextvars
import itertools
import random
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SalesforceError

KINDS = {
    "latency": "delay the response by latency_ms",
    "http_500": "HTTP 500 UNKNOWN_EXCEPTION",
    "http_502": "HTTP 502 Bad Gateway (an HTML page from the load balancer)",
    "http_503": "HTTP 503 SERVER_UNAVAILABLE",
    "drop": "send the status, headers and part of the body, then drop the connection",
    "drop_before": "drop the connection before the org sees the request: nothing is committed, no answer",
    "invalid_session": "expire the caller's session: HTTP 401 INVALID_SESSION_ID now and after",
    "request_limit": "HTTP 403 REQUEST_LIMIT_EXCEEDED",
    "lock_row": "UNABLE_TO_LOCK_ROW for each record written (per record in Collections and Bulk results)",
    "bulk_job_failed": "a Bulk API 2.0 job ends in state Failed with errorMessage",
    "unknown_client": "forget the streaming client of a /cometd request: 403::Unknown client, re-handshake",
}
REQUEST_KINDS = (
    "http_500",
    "http_502",
    "http_503",
    "drop",
    "drop_before",
    "invalid_session",
    "request_limit",
)

# The API path a record write belongs to: the request's, or the one that created a Bulk job.
current_route: contextvars.ContextVar[str] = contextvars.ContextVar("localorg_route", default="")


@dataclass
class Rule:
    """One fault rule (see the module docstring)."""

    kind: str
    route: str = ""
    method: str | None = None
    probability: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    message: str | None = None
    id: int = 0
    fired: int = 0
    _pattern: re.Pattern[str] = field(default=re.compile(""), repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class Faults:
    """The active rules of one server."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> Rule:
        """Add a rule from its JSON form; raises SalesforceError on a bad spec."""
        try:
            rule = Rule(**{k: v for k, v in spec.items() if k not in ("id", "fired") and k[:1] != "_"})
            rule._pattern = re.compile(rule.route)
        except (TypeError, re.error) as exc:
            raise SalesforceError(400, "INVALID_FAULT", f"bad fault rule: {exc}") from None
        if rule.kind not in KINDS:
            raise SalesforceError(400, "INVALID_FAULT", f"unknown kind {rule.kind}; one of {sorted(KINDS)}")
        if not 0 <= rule.probability <= 1 or (rule.count is not None and rule.count < 1):
            raise SalesforceError(400, "INVALID_FAULT", "probability must be in [0, 1] and count positive")
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def clear(self, rule_id: int | None = None) -> int:
        """Remove one rule (or all); returns how many were removed."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if rule_id is not None and r.id != rule_id]
            return before - len(self._rules)

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def take(self, kinds: tuple[str, ...], path: str, method: str | None = None) -> Rule | None:
        """The first rule of one of ``kinds`` that fires for this request (using up one of its count)."""
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or (rule.method and method and rule.method.upper() != method):
                    continue
                if not rule._pattern.search(path) or self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                return rule
        return None

    def check_record_write(self) -> None:
        """The store's write hook: a record write may fail with UNABLE_TO_LOCK_ROW."""
        rule = self.take(("lock_row",), current_route.get())
        if rule is not None:
            raise SalesforceError(
                400,
                "UNABLE_TO_LOCK_ROW",
                rule.message or "unable to obtain exclusive access to this record or 1 records",
                [],
            )
