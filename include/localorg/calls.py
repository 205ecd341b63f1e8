"""What a REST handler is given: one authenticated API request (``Call``), and the API versions served."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .database import User
from .errors import SalesforceError

MIN_VERSION, MAX_VERSION = 31, 62


@dataclass
class Call:
    """One API request after authentication; ``params`` are its path's parameters."""

    method: str
    path: str
    params: dict[str, Any]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    version: str
    user: User

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


# Runs the handler of one request (method, path, query string, headers, body, version, the path after
# /services/data/vXX.X/, user): the one code path of every API request and every Composite subrequest.
RouteCall = Callable[[str, str, str, dict[str, str], bytes, str, str, User], tuple[int, Any]]
