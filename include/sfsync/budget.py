"""The API budget guard: a step that would call Salesforce first asks whether the org's daily API usage
leaves the sync its share (``api_budget_share``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sfsync import locks, state

if TYPE_CHECKING:
    from sfsync.context import Context

log = logging.getLogger(__name__)

#: A usage reading over the budget is checked with the org again once it is this old: runs that skip make
#: no call, so nothing else would ever refresh it; younger readings are trusted (objects share them).
USAGE_FRESH = timedelta(seconds=60)


@dataclass(frozen=True)
class Verdict:
    """What the guard decided about one reading: hold the step back, and whether to ask the org again."""

    over: bool
    read_again: bool


def judge(usage: state.Usage | None, share: float) -> Verdict:
    """The decision on the latest reading (None before any): over the budget when the org has used at least
    ``share`` of its daily limit; a reading over it that is older than ``USAGE_FRESH`` is read again."""
    over = usage is not None and bool(usage.limit) and usage.used / usage.limit >= share
    return Verdict(over, over and usage is not None and usage.age >= USAGE_FRESH)


def holds_back(context: Context, sobject: str) -> str | None:
    """Why the org's API budget holds this step back, if it does. A stale reading over the budget is read
    again by one step at a time (the others skip meanwhile), with one small query of ``sobject`` whose
    answer carries Salesforce's ``Sforce-Limit-Info``; that call belongs to the step's run."""
    share = context.settings.api_budget_share
    usage = state.latest_usage(context.conn)
    verdict = judge(usage, share)
    if verdict.read_again:
        with locks.trying(context.conn, "api_usage") as mine:
            if mine:
                try:
                    context.sf.read_usage(sobject)
                except Exception as error:  # the reading stands, and the next run asks again
                    log.warning("%s: could not read the org's API usage: %s", sobject, error)
                context.record_usage()
                usage = state.latest_usage(context.conn)
                verdict = judge(usage, share)
                if not verdict.over:
                    log.info("the org's API usage is back under the budget: the sync resumes")
    if not verdict.over or usage is None:
        return None
    return (
        f"the org has used {usage.used} of its {usage.limit} daily API requests, above the "
        f"{share:.0%} share the sync may spend"
    )
