"""Every object of the registry, on a realistic org (seeded relationships, owners the integration user
cannot see), through creates, changes, deletes, undeletes, merges and conversions made by a live org."""

from __future__ import annotations

import zlib

import pytest
from simple_salesforce import Salesforce

from localorg.activity import Activity
from localorg.seed import Seeder, counts_for
from localorg.store import Org
from localorg.testing import running_org
from sfsync.registry import load_registry

pytestmark = pytest.mark.integration

OBJECTS = [entry.sobject for entry in load_registry().enabled()]


@pytest.fixture(scope="module")
def seeded_org(tmp_path_factory, local_org):
    data = tmp_path_factory.mktemp("seeded")
    with running_org(data) as org, pytest.MonkeyPatch.context() as mp:
        Seeder(Org(org.data_dir, org.definition), seed=7).run(counts_for(400))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", org.airflow_conn_json("integration"))
        mp.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        yield org


@pytest.mark.parametrize("sobject", OBJECTS)
def test_object_table_equals_what_the_integration_user_sees(sobject, seeded_org, sync, matches_org):
    integration = Salesforce(**seeded_org.salesforce_kwargs("integration"))
    first = sync(sobject.lower())
    assert first["status"] == "merged"
    assert matches_org(sobject, integration) == first["new"] + first["deleted"]

    activity = Activity(Org(seeded_org.data_dir, seeded_org.definition), seed=zlib.crc32(sobject.encode()))
    for _ in range(60):
        activity.step()
    touched = touch(Salesforce(**seeded_org.salesforce_kwargs("admin")), integration, sobject)
    changed = sync(sobject.lower())
    assert changed["updated"] >= touched, "every updateable object changes, not only the activity's"
    matches_org(sobject, integration)

    idle = sync(sobject.lower())
    assert (idle["new"], idle["updated"], idle["deleted"]) == (0, 0, 0), "a run with no change writes nothing"


def touch(admin: Salesforce, integration: Salesforce, sobject: str) -> int:
    """Update a text or picklist field of up to three records the integration user sees (records the
    org lets one update); return how many."""
    described = admin.restful(f"sobjects/{sobject}/describe")
    if not described["updateable"]:
        return 0
    field = next(
        f
        for f in described["fields"]
        if f["type"] in ("string", "textarea", "picklist") and f["updateable"] and not f["unique"]
        and not f["externalId"]
    )  # fmt: skip
    where = " WHERE IsConverted = false" if sobject == "Lead" else ""
    records = integration.query(f"SELECT Id FROM {sobject}{where} ORDER BY Id LIMIT 3")["records"]
    for i, record in enumerate(records):
        picklist = [v["value"] for v in field["picklistValues"] if v["active"]]
        value = picklist[i % len(picklist)] if picklist else f"Touched {i}"[: field["length"]]
        getattr(admin, sobject).update(record["Id"], {field["name"]: value})
    return len(records)
