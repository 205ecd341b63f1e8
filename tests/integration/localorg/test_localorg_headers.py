"""Response header names on the wire, read as raw bytes: Salesforce spells them ``Content-Type``,
``Sforce-Locator``, ... and some clients look them up in a plain, case-sensitive dict."""

from __future__ import annotations

import json
import socket
import ssl
import time
from urllib.parse import quote

import pytest
from simple_salesforce import Salesforce

from localorg.testing import RunningOrg

pytestmark = pytest.mark.integration

BASE = "/services/data/v59.0"


def _raw(
    org: RunningOrg, method: str, path: str, token: str, body: bytes = b""
) -> tuple[bytes, bytes, bytes]:
    """One request on a plain TLS socket: the status line, the header block and the body, as sent."""
    context = ssl.create_default_context(cafile=str(org.ca_file))
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{org.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", org.port), timeout=30) as plain:
        with context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    return status, headers, rest


def _names(headers: bytes) -> dict[bytes, bytes]:
    """The header block as {name exactly as sent: value}."""
    return dict(line.split(b": ", 1) for line in headers.split(b"\r\n"))  # type: ignore[misc]


def test_rest_query_headers_are_spelled_as_salesforce_does(sf: Salesforce, local_org: RunningOrg) -> None:
    q = quote("SELECT Id FROM Lead LIMIT 1")
    status, headers, _ = _raw(local_org, "GET", f"{BASE}/query?q={q}", sf.session_id)
    assert status == b"HTTP/1.1 200 OK"
    sent = _names(headers)
    assert sent[b"Content-Type"] == b"application/json;charset=UTF-8"
    assert sent[b"Sforce-Limit-Info"].startswith(b"api-usage=")
    assert b"Date" in sent
    assert all(name[:1].isupper() for name in sent), headers  # no lower-cased name at all


def test_rest_error_and_no_content_answers_keep_the_casing(sf: Salesforce, local_org: RunningOrg) -> None:
    status, headers, _ = _raw(local_org, "GET", f"{BASE}/sobjects/Lead/00Q000000000000AAA", sf.session_id)
    assert status.startswith(b"HTTP/1.1 404")
    sent = _names(headers)
    assert sent[b"Content-Type"] == b"application/json;charset=UTF-8"
    assert sent[b"Sforce-Limit-Info"].startswith(b"api-usage=")
    assert all(name[:1].isupper() for name in sent), headers


def test_bulk_query_results_headers_are_spelled_as_salesforce_does(
    sf: Salesforce, local_org: RunningOrg
) -> None:
    job = {"operation": "query", "query": "SELECT Id FROM User"}
    _, _, created = _raw(local_org, "POST", f"{BASE}/jobs/query", sf.session_id, json.dumps(job).encode())
    job_id = json.loads(created)["id"]
    for _ in range(600):
        _, _, info = _raw(local_org, "GET", f"{BASE}/jobs/query/{job_id}", sf.session_id)
        if json.loads(info)["state"] == "JobComplete":
            break
        time.sleep(0.1)
    status, headers, _ = _raw(
        local_org, "GET", f"{BASE}/jobs/query/{job_id}/results?maxRecords=1", sf.session_id
    )
    assert status == b"HTTP/1.1 200 OK"
    sent = _names(headers)
    assert sent[b"Content-Type"] == b"text/csv"
    assert sent[b"Sforce-NumberOfRecords"] == b"1"
    assert sent[b"Sforce-Locator"] not in (b"", b"null")
    assert sent[b"Sforce-Limit-Info"].startswith(b"api-usage=")
    assert sent.get(b"Transfer-Encoding", b"chunked") == b"chunked"
    assert all(name[:1].isupper() for name in sent), headers
