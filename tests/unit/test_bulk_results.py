"""Bulk API 2.0 query results: read page by page by locator, and read again from the first page when
iterated again (a fallback after a failed first use), each page one call."""

from sfsync import salesforce
from sfsync.salesforce import Salesforce


class Response:
    def __init__(self, records: int, locator: str, body: bytes) -> None:
        self.headers = {"Sforce-NumberOfRecords": str(records), "Sforce-Locator": locator}
        self.body = body

    def iter_content(self, size: int):
        yield self.body

    def close(self) -> None:
        pass


def test_each_iteration_reads_every_page_again_by_locator(monkeypatch):
    pages = {"": Response(2, "MQ", b'"Id"\n"a"\n"b"\n'), "MQ": Response(1, "null", b'"Id"\n"c\x00"\n')}
    gets = []

    def call_salesforce(url, method, session, headers, params, stream):
        gets.append((url, params))
        return pages[params.get("locator", "")]

    monkeypatch.setattr(salesforce, "call_salesforce", call_salesforce)
    sf = Salesforce.__new__(Salesforce)  # no login: only the client's URL, headers and session are used
    sf.client = type("Client", (), {"bulk2_url": "https://org/services/data/v59.0/jobs/", "headers": {},
                                    "session": None})()  # fmt: skip
    results = salesforce.BulkResults(sf, "750X", 2)
    read = [(page.records, b"".join(page)) for page in results]
    assert read == [(2, b'"Id"\n"a"\n"b"\n'), (1, b'"Id"\n"c"\n')]
    assert [(page.records, b"".join(page)) for page in results] == read
    url = "https://org/services/data/v59.0/jobs/query/750X/results"
    first, second = {"maxRecords": 2}, {"maxRecords": 2, "locator": "MQ"}
    assert gets == [(url, first), (url, second)] * 2
