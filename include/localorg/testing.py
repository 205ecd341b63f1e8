"""Run a local org in a subprocess, for tests, benchmarks and the demo.

with running_org(tmp_path / "org") as org:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
    sf = Salesforce(**org.salesforce_kwargs("integration"))
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .admin import admin_token
from .connection import Connection, ensure_certificates, refresh_tokens
from .datadir import private_opener
from .orgdef import DEFAULT_ORG_FILE, OrgDef, UserDef, load_org
from .profile import PROFILES, Profile


@dataclass(frozen=True)
class RunningOrg:
    """A started local org; users are named by the local part of their username ("integration")."""

    port: int
    data_dir: Path
    ca_file: Path
    definition: OrgDef
    log_file: Path
    profile: Profile = PROFILES["instant"]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, UserDef]:
        return {u.username.split("@")[0]: u for u in self.definition.users}

    def connection(self, user: str = "integration") -> Connection:
        return Connection(self.port, self.credentials[user])

    def salesforce_kwargs(self, user: str = "integration") -> dict[str, str]:
        return self.connection(user).salesforce_kwargs()

    def airflow_conn_json(self, user: str = "integration") -> str:
        return self.connection(user).airflow_json()

    def airflow_conn_uri(self, user: str = "integration") -> str:
        return self.connection(user).airflow_uri()

    def refresh_token(self, user: str = "integration", app: int = 0) -> str:
        """The user's live refresh token for a connected app (as ``python -m localorg connection`` prints)."""
        tokens = refresh_tokens(self.data_dir, self.definition)
        return tokens[self.definition.connected_apps[app].name][self.credentials[user].username]

    def admin(self, path: str, body: object = None, method: str = "POST") -> tuple[int, object]:
        """Call ``/localorg/admin/<path>`` with the data directory's admin token: (status, JSON)."""
        request = urllib.request.Request(
            f"{self.base_url}/localorg/admin/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "X-Localorg-Admin-Token": admin_token(self.data_dir),
                "Content-Type": "application/json",
            },
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def sample_lead(**fields: object) -> dict[str, object]:
    """A Lead body that passes the org's validation (required fields and the Email-or-Phone rule)."""
    return {"LastName": "Lovelace", "Company": "Analytical Engines", "Email": "ada@example.com", **fields}


def changed_org_file(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The default org definition with ``change(document)`` applied, written to ``path`` (for
    ``running_org(org_file=...)``)."""
    document = yaml.safe_load(DEFAULT_ORG_FILE.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))
    return path


def view_all(objects: list[str]) -> Callable[[dict[str, Any]], None]:
    """A change giving the integration user "View All" on ``objects`` (which change events need)."""

    def change(document: dict[str, Any]) -> None:
        integration = next(p for p in document["profiles"] if p["name"] == "Integration User")
        integration["view_all_objects"] = objects

    return change


def next_second() -> None:
    """Sleep into the next whole second: the org stamps writes to the second (as Salesforce does), so a
    test that expects a later SystemModstamp must let the clock tick first."""
    time.sleep(1 - time.time() % 1 + 0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_org(
    data_dir: Path,
    *,
    session_timeout: float | None = None,
    api_limit: int | None = None,
    org_file: Path = DEFAULT_ORG_FILE,
    startup_timeout: float = 30.0,
    profile: str | Profile = "instant",
    streaming_timeout_ms: int | None = None,
) -> Iterator[RunningOrg]:
    """Start ``python -m localorg serve`` on a free port, wait until it answers, stop it on exit.
    ``profile``: a latency profile's name or a ``localorg.profile.Profile`` (see that module);
    ``streaming_timeout_ms``: how long an idle streaming /meta/connect is held (Salesforce: 110 s)."""
    ca_file, _ = ensure_certificates(data_dir)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "localorg",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data_dir),
        "--org",
        str(org_file),
    ]
    if session_timeout is not None:
        command += ["--session-timeout", str(session_timeout)]
    if api_limit is not None:
        command += ["--api-limit", str(api_limit)]
    if streaming_timeout_ms is not None:
        command += ["--streaming-timeout-ms", str(streaming_timeout_ms)]
    latency = PROFILES[profile] if isinstance(profile, str) else profile
    command += latency.cli_args()
    log_file = data_dir / f"server-{port}.log"
    src_root = Path(__file__).resolve().parents[1]
    with open(log_file, "w", opener=private_opener) as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=src_root)
    try:
        _wait_until_ready(process, port, ca_file, log_file, startup_timeout)
        yield RunningOrg(port, data_dir, ca_file, load_org(org_file), log_file, latency)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(
    process: subprocess.Popen[bytes], port: int, ca_file: Path, log_file: Path, timeout: float
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localorg exited with {process.returncode}:\n{log_file.read_text()}")
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/services/data/", context=context, timeout=2
            ):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"localorg did not answer within {timeout}s:\n{log_file.read_text()}")
