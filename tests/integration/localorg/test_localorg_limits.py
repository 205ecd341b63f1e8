"""API usage reporting and the daily request limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceRefusedRequest

from localorg.testing import RunningOrg, running_org

pytestmark = pytest.mark.integration


def test_limits_and_usage_header(sf: Salesforce, local_org: RunningOrg) -> None:
    limits = sf.limits()["DailyApiRequests"]
    assert limits["Max"] == 15000 and 0 < limits["Remaining"] < 15000
    sf.query("SELECT COUNT() FROM Lead")
    usage = sf.api_usage["api-usage"]
    assert usage.total == 15000 and usage.used == 15000 - limits["Remaining"] + 1
    response = requests.get(
        f"{local_org.base_url}/services/data/v59.0/limits/",
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_unknown_paths_and_methods(sf: Salesforce, local_org: RunningOrg) -> None:
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    missing = requests.get(f"{local_org.base_url}/services/data/v59.0/nothing/here", headers=headers)
    assert (missing.status_code, missing.json()[0]["errorCode"]) == (404, "NOT_FOUND")
    wrong = requests.put(f"{local_org.base_url}/services/data/v59.0/sobjects/Lead/describe", headers=headers)
    assert (wrong.status_code, wrong.json()[0]["errorCode"]) == (405, "METHOD_NOT_ALLOWED")
    bad_json = requests.post(
        f"{local_org.base_url}/services/data/v59.0/sobjects/Lead/", data="{nope", headers=headers
    )
    assert (bad_json.status_code, bad_json.json()[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")


def test_exhausted_limit_refuses_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_org(tmp_path / "limited", api_limit=3) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        sf = Salesforce(**org.salesforce_kwargs("integration"))
        for _ in range(3):
            sf.query("SELECT COUNT() FROM Lead")
        assert sf.api_usage["api-usage"].used == 3
        with pytest.raises(SalesforceRefusedRequest) as caught:
            sf.query("SELECT COUNT() FROM Lead")
        assert caught.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]


def test_limits_lists_the_usual_keys_and_counts_bulk_jobs(sf: Salesforce) -> None:
    before = sf.limits()
    for name in (
        "DailyApiRequests",
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DailyBulkV2QueryFileStorageMB",
        "ConcurrentAsyncGetReportInstances",
        "DataStorageMB",
    ):
        assert (
            set(before[name]) == {"Max", "Remaining"}
            and 0 <= before[name]["Remaining"] <= before[name]["Max"]
        )
    list(sf.bulk2.Lead.query("SELECT Id FROM Lead LIMIT 1", wait=0))
    after = sf.limits()
    assert after["DailyBulkV2QueryJobs"]["Remaining"] == before["DailyBulkV2QueryJobs"]["Remaining"] - 1
