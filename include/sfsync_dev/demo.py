"""``make run``: the demo on embedded defaults.

Starts the embedded warehouse and the local org (seeded on the first run, then kept changing by its activity
mode; both reuse their data from earlier runs), loads
``airflow_settings.yaml`` into a project-local Airflow home (``.airflow``), and runs ``airflow standalone``
with the project's DAGs. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sfsync_dev.embedded import DEFAULT_PORT as WAREHOUSE_PORT
from sfsync_dev.embedded import PROJECT_ROOT, EmbeddedWarehouse

AIRFLOW_HOME = PROJECT_ROOT / ".airflow"
ORG_DIR = PROJECT_ROOT / ".sfsync" / "localorg"
ORG_PORT = 8443
UI = "http://localhost:8080"
STATUS_PAGE = f"{UI}/plugin/salesforce-sync"  # the plugin's page, inside the Airflow UI


def airflow_environment(home: Path = AIRFLOW_HOME, ca_file: Path | None = None) -> dict[str, str]:
    """The environment every Airflow process of the demo runs with (``home``: its AIRFLOW_HOME; ``ca_file``:
    the local org's CA, by default the demo org's)."""
    from localorg.connection import ensure_certificates

    if ca_file is None:
        ca_file, _ = ensure_certificates(ORG_DIR)
    return os.environ | {
        # standalone starts its components as `airflow ...` commands: they must come from this environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # A demo should sync from the first minute, not wait for someone to unpause twelve DAGs.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # The Salesforce client verifies TLS against this bundle: the local org's own CA.
        "REQUESTS_CA_BUNDLE": str(ca_file),
    }


def airflow(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "airflow", *args], env=env, check=True, stdout=subprocess.DEVNULL)


def wait_for_ui(standalone: subprocess.Popen[bytes], ui: str = UI) -> bool:
    """Whether the UI at ``ui`` answered before ``standalone`` ended."""
    while standalone.poll() is None:
        try:
            urllib.request.urlopen(f"{ui}/api/v2/version", timeout=2).close()
            return True
        except OSError:
            time.sleep(1)
    return False


def _print_login(standalone: subprocess.Popen[bytes]) -> None:
    """Once the UI answers, print where it and the sync's status page are and how to log in (standalone
    generates the password)."""
    wait_for_ui(standalone)
    passwords = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    for user, password in json.loads(passwords.read_text() if passwords.exists() else "{}").items():
        print(
            f"\nAirflow UI: {UI}   login: {user}   password: {password}"
            f"\nSalesforce sync status: {STATUS_PAGE}\n",
            flush=True,
        )


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Interrupt the process group of ``process``, then kill what is left of it after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(20)
        time.sleep(2)  # the group's other members finish their own shutdown
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it, even from a background job
    warehouse = EmbeddedWarehouse(port=int(os.environ.get("SFSYNC_WAREHOUSE_PORT", WAREHOUSE_PORT))).start()
    print(f"warehouse: {warehouse.url()}", flush=True)
    env = airflow_environment()
    if not (ORG_DIR / "org.sqlite").exists():  # a first run: a realistic org to sync, not an empty one
        print("seeding the local org (2,000 Leads and related records)...", flush=True)
        seed = [sys.executable, "-m", "localorg", "seed", "--data", str(ORG_DIR), "--count", "2000"]
        seed += ["--objects", "Campaign=12"]  # 2,000 Leads' share is one, maybe owned by a hidden user
        subprocess.run(seed, env=env, check=True, stdout=subprocess.DEVNULL)
    # Each service gets its own process group: Ctrl-C reaches only this launcher, which then stops every
    # group whole (airflow standalone leaves its scheduler's workers behind when signalled alone).
    org = subprocess.Popen(
        [sys.executable, "-m", "localorg", "serve", "--port", str(ORG_PORT), "--data", str(ORG_DIR)],
        env=env,
        start_new_session=True,
    )
    # A live org: records keep being created, changed, deleted, merged and converted while the demo runs.
    activity = subprocess.Popen(
        [sys.executable, "-m", "localorg", "activity", "--data", str(ORG_DIR), "--rate", "0.5"],
        env=env,
        start_new_session=True,
    )
    standalone = None
    try:
        AIRFLOW_HOME.mkdir(exist_ok=True)
        airflow(env, "db", "migrate")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sfsync_dev.airflow_settings",
                str(PROJECT_ROOT / "airflow_settings.yaml"),
            ],
            env=env,
            check=True,
        )
        standalone = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"], env=env, start_new_session=True
        )
        _print_login(standalone)
        return standalone.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for process in (standalone, activity, org):
            if process is not None:
                stop_group(process)
        warehouse.stop()
        print("demo stopped; its data stays in .sfsync and .airflow for the next run", flush=True)


if __name__ == "__main__":
    sys.exit(main())
