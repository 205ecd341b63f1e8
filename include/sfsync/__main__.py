"""``python -m sfsync``: check a registry before it is deployed, and write its JSON Schema.

python -m sfsync check [FILE]                       # the file alone: keys, objects, directions, schedules
python -m sfsync check [FILE] --salesforce CONN_ID  # and every object and field against the org's describe
python -m sfsync schema                             # the registry's JSON Schema, for editors and CI
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sfsync.registry import Registry, RegistryError, load_registry

SCHEMA_FILE = Path(__file__).with_name("registry.schema.json")


def schema() -> str:
    """The registry's JSON Schema, as committed in ``registry.schema.json``."""
    return json.dumps(Registry.model_json_schema(), indent=2, sort_keys=True) + "\n"


def check(path: str | None, conn_id: str | None) -> list[str]:
    """The problems of a registry file, one line each (none: it is good); warnings are printed."""
    try:
        registry = load_registry(path)
    except RegistryError as error:
        return str(error).splitlines()
    if conn_id is None:
        return []
    from sfsync.columns import check_fields
    from sfsync.salesforce import Salesforce

    sf = Salesforce(conn_id)
    problems = []
    for entry in registry.enabled():
        try:
            for warning in check_fields(entry, sf.describe(entry.sobject)):
                print(f"warning: {warning}", file=sys.stderr)
        except RegistryError as error:
            problems += str(error).splitlines()
        except Exception as error:  # the object itself: not there, or not visible to the integration user
            problems.append(f"{entry.sobject}: {type(error).__name__}: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfsync", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="validate a registry file (default: the one the DAGs read)")
    checking.add_argument(
        "file", nargs="?", help="the registry file (default: SFSYNC_REGISTRY or objects.yaml)"
    )
    checking.add_argument("--salesforce", metavar="CONN_ID", help="an Airflow connection to check against")
    commands.add_parser("schema", help="print the registry's JSON Schema")
    args = parser.parse_args(argv)
    if args.command == "schema":
        sys.stdout.write(schema())
        return 0
    problems = check(args.file, args.salesforce)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("registry has problems" if problems else "registry ok", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
