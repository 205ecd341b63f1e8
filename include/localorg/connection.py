"""TLS material and the connection settings clients use to reach a local org."""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import trustme

from . import oauth
from .datadir import DIR_MODE, write_private
from .orgdef import OrgDef, UserDef

CA_FILE = "ca.pem"
SERVER_CERT_FILE = "server.pem"
API_VERSION = "59.0"


def ensure_certificates(data_dir: Path) -> tuple[Path, Path]:
    """The CA file clients trust and the server's key+chain PEM; created on first use, then reused."""
    ca_file, server_file = data_dir / CA_FILE, data_dir / SERVER_CERT_FILE
    if not (ca_file.exists() and server_file.exists()):
        data_dir.mkdir(DIR_MODE, parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="localorg")
        # The client connects to https://127.0.0.1:<port>, so the certificate must name the IP.
        cert = ca.issue_cert("127.0.0.1", "localhost")
        write_private(server_file, cert.private_key_and_cert_chain_pem.bytes())
        write_private(ca_file, ca.cert_pem.bytes())
    return ca_file, server_file


def refresh_tokens(data_dir: Path, definition: OrgDef) -> dict[str, dict[str, str]]:
    """Each connected app's live refresh token of every user (app name -> username -> token), issuing
    those missing; they are kept in the org's store, so a running server and later starts accept them."""
    now = int(time.time() * 1000)
    with closing(oauth.open_store(data_dir)) as conn:
        return {
            app.name: {
                u.username: oauth.issue(conn, app.consumer_key, u.username, now) for u in definition.users
            }
            for app in definition.connected_apps
        }


@dataclass(frozen=True)
class Connection:
    """How one user reaches the org on ``port``: Airflow connection and simple-salesforce arguments."""

    port: int
    user: UserDef

    @property
    def domain(self) -> str:
        # simple-salesforce logs in at https://{domain}.salesforce.com/...; "host:port/?" turns the
        # ".salesforce.com/services/..." tail into a query string the local org routes on.
        return f"127.0.0.1:{self.port}/?"

    def salesforce_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``simple_salesforce.Salesforce``."""
        return {
            "username": self.user.username,
            "password": self.user.password,
            "security_token": self.user.security_token,
            "domain": self.domain,
            "version": API_VERSION,
        }

    def airflow_json(self) -> str:
        """An ``AIRFLOW_CONN_*`` value; ``version`` must stay a JSON string (a number breaks login)."""
        return json.dumps(
            {
                "conn_type": "salesforce",
                "login": self.user.username,
                "password": self.user.password,
                "extra": {
                    "security_token": self.user.security_token,
                    "domain": self.domain,
                    "version": API_VERSION,
                },
            }
        )

    def airflow_uri(self) -> str:
        """The same connection as an Airflow URI."""
        login, password = quote(self.user.username, safe=""), quote(self.user.password, safe="")
        return (
            f"salesforce://{login}:{password}@/?security_token={quote(self.user.security_token, safe='')}"
            f"&domain={quote(self.domain, safe='')}&version={API_VERSION}"
        )
