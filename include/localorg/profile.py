"""Latency profiles: how long the org takes to answer.

``instant`` (the default) answers every call and finishes every Bulk job as fast as the machine allows.
``realistic`` makes the org as slow as a real one, so that a design making many calls or many small Bulk
jobs costs here what it costs against Salesforce: every API request (logins too) is answered after a
round trip, and a Bulk API 2.0 job stays InProgress for a base time plus a time per record once one of a
few processing slots takes it; until then it waits in UploadComplete. No randomness: the same calls take
the same time on every run. Each value can be set on its own, over either profile (``serve --profile
realistic --bulk-job-seconds 0.5``, or ``dataclasses.replace(PROFILES["realistic"], bulk_job_seconds=0.5)``
as ``running_org``'s ``profile``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """How slow the org is; the default values are the instant profile's (see ``HELP``)."""

    name: str = "instant"
    rest_latency_ms: int = 0
    bulk_job_seconds: float = 0.0
    bulk_query_seconds_per_10k: float = 0.0
    bulk_ingest_seconds_per_10k: float = 0.0
    bulk_query_concurrency: int = 0
    bulk_ingest_concurrency: int = 0

    def bulk_seconds(self, kind: str, records: int) -> float:
        """How long a Bulk job of ``kind`` and ``records`` records is processed: "ingest", else a query
        (a Bulk API 2.0 query job or a Bulk API 1.0 query batch)."""
        per_10k = self.bulk_ingest_seconds_per_10k if kind == "ingest" else self.bulk_query_seconds_per_10k
        return self.bulk_job_seconds + per_10k * records / 10_000

    def concurrency(self, kind: str) -> int:
        """How many Bulk jobs of ``kind`` (as in ``bulk_seconds``) are processed at once (0: as many as the
        server's workers)."""
        return self.bulk_ingest_concurrency if kind == "ingest" else self.bulk_query_concurrency

    def cli_args(self) -> list[str]:
        """``serve`` arguments that select this profile (``--profile`` and the values that differ)."""
        base = PROFILES[self.name]
        args = ["--profile", self.name]
        for name in HELP:
            if getattr(self, name) != getattr(base, name):
                args += [_flag(name), str(getattr(self, name))]
        return args

    def __str__(self) -> str:
        if self == PROFILES["instant"]:
            return self.name
        queued = "/".join(str(self.concurrency(k) or "any") for k in ("query", "ingest"))
        return (
            f"{self.name}: API requests +{self.rest_latency_ms} ms; Bulk jobs {self.bulk_job_seconds:g} s"
            f" + {self.bulk_query_seconds_per_10k:g} s (query) / {self.bulk_ingest_seconds_per_10k:g} s"
            f" (ingest) per 10,000 records, at most {queued} (query/ingest) at once"
        )


# The realistic profile's values, from what Salesforce documents and what is commonly observed:
# - 150 ms a request: a REST call from a client in the org's region commonly takes 100-300 ms end to end
#   (TLS set up already; the org's app servers take most of it), a login as long.
# - 2.5 s a Bulk job: a job is queued and processed asynchronously ("How Requests Are Processed", Bulk API
#   2.0 Developer Guide: UploadComplete until Salesforce de-queues it, then InProgress); even a job of a
#   handful of records rarely completes in under 2 s, and a few seconds are usual.
# - 1 s per 10,000 query records: Bulk query exports commonly run at about 10,000 records a second.
# - 5 s per 10,000 ingest records: Salesforce processes ingest data in internal batches of 10,000 records
#   (the same guide), each within a few seconds on an object without heavy automation (and allowed up to
#   10 minutes before it is retried), so about 2,000 records a second.
# - 5 jobs of each kind at once: Salesforce documents no per-org number; jobs share the org's (and the
#   pod's) asynchronous processing queue, and an org running more than a few at once sees the others
#   wait in UploadComplete. A small number keeps a design that starts many jobs honest.
PROFILES = {
    "instant": Profile(),
    "realistic": Profile(
        "realistic",
        rest_latency_ms=150,
        bulk_job_seconds=2.5,
        bulk_query_seconds_per_10k=1.0,
        bulk_ingest_seconds_per_10k=5.0,
        bulk_query_concurrency=5,
        bulk_ingest_concurrency=5,
    ),
}

HELP = {
    "rest_latency_ms": "milliseconds before every API request is answered",
    "bulk_job_seconds": "seconds a Bulk job stays InProgress, whatever its size",
    "bulk_query_seconds_per_10k": "more seconds per 10,000 records of a query job",
    "bulk_ingest_seconds_per_10k": "more seconds per 10,000 records of an ingest job",
    "bulk_query_concurrency": "query jobs processed at once; others wait in UploadComplete (0: no limit)",
    "bulk_ingest_concurrency": "ingest jobs processed at once; others wait in UploadComplete (0: no limit)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--profile`` and one option per value of a profile, each overriding the profile's."""
    parser.add_argument("--profile", choices=sorted(PROFILES), default="instant", help="latency profile")
    types = {f.name: float if f.type == "float" else int for f in dataclasses.fields(Profile)}
    for name, text in HELP.items():
        parser.add_argument(_flag(name), type=types[name], help=text)


def from_args(args: argparse.Namespace) -> Profile:
    """The profile that ``add_arguments``' options select."""
    overrides = {name: getattr(args, name) for name in HELP if getattr(args, name) is not None}
    return dataclasses.replace(PROFILES[args.profile], **overrides)
