"""Salesforce-shaped errors: every failure the local org reports goes through these types."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordError:
    """One entry of a record's ``errors`` list (``{"statusCode","message","fields"}``)."""

    status_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, object]:
        """The shape sObject Collections and create/upsert results use."""
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}

    def as_rest(self) -> dict[str, object]:
        """The shape single-record REST calls use (``errorCode`` instead of ``statusCode``)."""
        return {"message": self.message, "errorCode": self.status_code, "fields": self.fields}


class SalesforceError(Exception):
    """An error answered as ``[{"message","errorCode",...}]`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, object]]:
        """The JSON list Salesforce returns; ``fields`` appears only where Salesforce sends it."""
        entry: dict[str, object] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


class RecordValidationError(SalesforceError):
    """A record failed validation; single-record calls answer 400, collections report it per record."""

    def __init__(self, errors: list[RecordError]) -> None:
        first = errors[0]
        super().__init__(400, first.status_code, first.message, first.fields)
        self.errors = errors

    def body(self) -> list[dict[str, object]]:
        return [e.as_rest() for e in self.errors]


def not_found(message: str = "The requested resource does not exist") -> SalesforceError:
    """Salesforce's 404 for unknown resources and records the caller may not see."""
    return SalesforceError(404, "NOT_FOUND", message)


def invalid_session() -> SalesforceError:
    """The 401 that makes simple-salesforce log in again (it needs a JSON list with this code)."""
    return SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def record_errors(exc: SalesforceError) -> list[RecordError]:
    """The per-record errors of a failed record write (Collections, Bulk and admin results)."""
    if isinstance(exc, RecordValidationError):
        return exc.errors
    return [RecordError(exc.code, exc.message, exc.fields or [])]
