"""Command line: ``python -m localorg serve|connection|seed|activity|admin`` (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import DEFAULT_DATA_DIR, DEFAULT_PORT, profile
from .connection import Connection, ensure_certificates, refresh_tokens
from .orgdef import DEFAULT_ORG_FILE, OrgDef, load_org


def _print_connection(port: int, data_dir: Path, definition: OrgDef, username: str) -> None:
    ca_file, _ = ensure_certificates(data_dir)
    conn = Connection(port, definition.user(username))
    print(f"REQUESTS_CA_BUNDLE={ca_file.resolve()}")
    print(f"AIRFLOW_CONN_SALESFORCE_DEFAULT='{conn.airflow_json()}'")
    print(f"AIRFLOW_CONN_SALESFORCE_DEFAULT='{conn.airflow_uri()}'")
    print(
        "users: "
        + ", ".join(f"{u.username} / {u.password} / token {u.security_token}" for u in definition.users)
    )
    tokens = refresh_tokens(data_dir, definition)
    for app in definition.connected_apps:
        print(f"connected app {app.name}: client_id {app.consumer_key} / client_secret {app.consumer_secret}")
        print(
            f"refresh tokens ({app.name}, grant_type=refresh_token): "
            + ", ".join(f"{user} {token}" for user, token in tokens[app.name].items())
        )
    sys.stdout.flush()


def _admin_body(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(HTTP method, path under /localorg/admin/, JSON body) of an ``admin`` command."""
    if args.operation == "undelete":
        return "POST", "undelete", {"ids": args.ids}
    if args.operation == "purge":
        return "POST", "purge", {"expired": True} if args.expired else {"ids": args.ids}
    if args.operation == "merge":
        return "POST", "merge", {"masterId": args.master, "duplicateIds": args.duplicates}
    if args.operation == "convert-lead":
        body = {
            "leadId": args.lead,
            "accountId": args.account,
            "contactId": args.contact,
            "doNotCreateOpportunity": args.no_opportunity,
            "opportunityName": args.opportunity_name,
            "convertedStatus": args.status,
        }
        return "POST", "convert-lead", {k: v for k, v in body.items() if v is not None}
    if args.action == "add":
        rule = {
            k: getattr(args, k) for k in ("kind", "route", "method", "probability", "count", "latency_ms")
        }
        rule["message"] = args.message
        return "POST", "faults", {k: v for k, v in rule.items() if v is not None}
    if args.action == "clear":
        return "DELETE", f"faults/{args.rule}" if args.rule else "faults", None
    return "GET", "faults", None


def _admin(args: argparse.Namespace, definition: OrgDef) -> Any:
    """Run an admin command through the server on ``--port``, or directly on the data directory."""
    from . import admin

    method, path, body = _admin_body(args)
    if args.port is None:
        if path.startswith("faults"):
            raise SystemExit("faults live in a running server: pass --port")
        from .store import Org

        org = Org(args.data, definition)
        return admin.run(org, org.users[args.as_user], path, body)
    request = urllib.request.Request(
        f"https://127.0.0.1:{args.port}/localorg/admin/{path}",
        data=None if body is None else json.dumps({**body, "asUser": args.as_user}).encode(),
        method=method,
        headers={"X-Localorg-Admin-Token": admin.admin_token(args.data), "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(args.data / "ca.pem"))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{exc.code}: {exc.read().decode()}") from None


def _admin_parser(sub: Any) -> None:
    p = sub.add_parser("admin", help="undelete, purge, merge, convert leads, inject faults")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--org", type=Path, default=DEFAULT_ORG_FILE)
    p.add_argument("--port", type=int, help="talk to the server on this port (else: the data dir directly)")
    p.add_argument("--as-user", default="admin@localorg.test", help="the user the operation runs as")
    ops = p.add_subparsers(dest="operation", required=True)
    ops.add_parser("undelete").add_argument("ids", nargs="+")
    purge = ops.add_parser("purge", help="empty records out of the recycle bin")
    purge.add_argument("ids", nargs="*")
    purge.add_argument("--expired", action="store_true", help="purge what spent 15 days in the recycle bin")
    merge = ops.add_parser("merge")
    merge.add_argument("master")
    merge.add_argument("duplicates", nargs="+")
    convert = ops.add_parser("convert-lead")
    convert.add_argument("lead")
    convert.add_argument("--account")
    convert.add_argument("--contact")
    convert.add_argument("--no-opportunity", action="store_true", default=None)
    convert.add_argument("--opportunity-name")
    convert.add_argument("--status")
    fault = ops.add_parser("faults", help="list, add or clear fault rules of a running server")
    actions = fault.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    add = actions.add_parser("add")
    add.add_argument("kind")
    add.add_argument("--route", help="regular expression searched in the request path")
    add.add_argument("--method")
    add.add_argument("--probability", type=float)
    add.add_argument("--count", type=int)
    add.add_argument("--latency-ms", type=int)
    add.add_argument("--message")
    actions.add_parser("clear").add_argument("rule", nargs="?", type=int)


def main(argv: list[str] | None = None) -> None:
    # Files are created private where they are made; the umask keeps anything else the CLI writes so too.
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="python -m localorg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    seed = sub.add_parser("seed", help="fill the org with realistic, deterministic data")
    activity = sub.add_parser("activity", help="keep changing records at a steady rate")
    for p in (seed, activity):
        p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
        p.add_argument("--org", type=Path, default=DEFAULT_ORG_FILE)
        p.add_argument("--seed", type=int, default=1)
    seed.add_argument("--count", type=int, default=10_000, help="Leads; other objects in proportion")
    seed.add_argument("--objects", default="", help="per-object counts, e.g. Account=100,Contact=400")
    seed.add_argument("--as-of", help="the day (YYYY-MM-DD) dates are relative to; default today")
    activity.add_argument("--rate", type=float, default=5.0, help="operations per second")
    activity.add_argument("--duration", type=float, help="seconds to run (default: until interrupted)")
    _admin_parser(sub)
    for name in ("serve", "connection"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="org directory (SQLite file, CA)")
        p.add_argument("--org", type=Path, default=DEFAULT_ORG_FILE, help="org definition YAML")
        p.add_argument("--user", default="integration@localorg.test", help="user of the printed connection")
        if name == "serve":
            p.add_argument(
                "--session-timeout", type=float, help="seconds of inactivity before a session expires"
            )
            p.add_argument("--api-limit", type=int, help="daily API request limit")
            p.add_argument(
                "--streaming-timeout-ms",
                type=int,
                help="milliseconds an idle streaming /meta/connect is held (default 110000, as Salesforce)",
            )
            profile.add_arguments(p)
    args = parser.parse_args(argv)
    definition = load_org(args.org)
    if args.command == "connection":
        _print_connection(args.port, args.data, definition, args.user)
        return
    if args.command == "admin":
        print(json.dumps(_admin(args, definition), indent=2))
        return
    if args.command in ("seed", "activity"):
        _populate(args, definition)
        return

    import uvicorn

    from .database import untrack_sqlite_memory
    from .server import create_app
    from .store import Org
    from .streaming import CONNECT_TIMEOUT_MS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    untrack_sqlite_memory()
    org = Org(args.data, definition)
    _, server_file = ensure_certificates(args.data)
    settings = definition.settings
    latency = profile.from_args(args)
    app = create_app(
        org,
        args.session_timeout or settings.session_timeout_seconds,
        args.api_limit or settings.daily_api_requests,
        latency,
        args.streaming_timeout_ms or CONNECT_TIMEOUT_MS,
    )
    _print_connection(args.port, args.data, definition, args.user)
    print(f"profile {latency}")
    print(f"serving https://127.0.0.1:{args.port} from {args.data.resolve()}", flush=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=str(server_file),
        log_level="warning",
        date_header=False,  # the app stamps its own, exact Date
        server_header=False,  # Salesforce sends no "server: uvicorn", and uvicorn adds it past the app
        http="h11",  # httptools lower-cases every header name on the wire; h11 sends the app's casing
        # A client's idle keep-alive connection holds a graceful stop for as long as its TLS close waits
        # (asyncio allows 30 s): a stopping org gives open answers a second, then leaves.
        timeout_graceful_shutdown=1,
    )


def _populate(args: argparse.Namespace, definition: OrgDef) -> None:
    from .schema import parse_datetime
    from .store import Org

    org = Org(args.data, definition)
    started = time.perf_counter()
    if args.command == "seed":
        from .seed import Seeder, counts_for

        overrides = {k: int(v) for k, v in (item.split("=") for item in args.objects.split(",") if item)}
        as_of = parse_datetime(args.as_of) if args.as_of else None
        rows = Seeder(org, args.seed, as_of).run(counts_for(args.count, overrides))
        print(json.dumps(rows), f"\nseeded in {time.perf_counter() - started:.1f}s", flush=True)
        return
    from .activity import Activity

    # SIGINT is how it is told to stop (Ctrl-C, the soak, the demo), even when started from a shell's
    # background job, which ignores SIGINT for all it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        counts = Activity(org, args.seed).run(args.rate, args.duration)
    except KeyboardInterrupt:
        return
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
