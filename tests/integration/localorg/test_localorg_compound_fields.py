"""Compound fields (addresses, geolocations) through the real simple-salesforce client and plain HTTP:
readable as one nested value over REST, never over Bulk, never filtered, never written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pydantic
import pytest
import requests
import yaml
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from localorg.orgdef import DEFAULT_ORG_FILE, OrgDef
from localorg.testing import sample_lead as lead
from sfsync import columns, soql

pytestmark = pytest.mark.integration

ADDRESS_PARTS = "Street City State PostalCode Country Latitude Longitude GeocodeAccuracy".split()
COMPOUNDS = [
    ("Lead", "Address", ""),
    ("User", "Address", ""),
    ("Contact", "MailingAddress", "Mailing"),
    ("Contact", "OtherAddress", "Other"),
    ("Account", "BillingAddress", "Billing"),
    ("Account", "ShippingAddress", "Shipping"),
]
BULK_REFUSAL = [{"errorCode": "API_ERROR", "message": "Selecting compound data not supported in Bulk Query"}]


def post_query_job(sf: Salesforce, query: str) -> requests.Response:
    return requests.post(
        f"{sf.base_url}jobs/query",
        json={"operation": "query", "query": query},
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )


def error_of(call: Callable[[], object]) -> dict:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        call()
    return caught.value.content[0]


@pytest.mark.parametrize(("sobject", "compound", "prefix"), COMPOUNDS)
def test_describe_has_each_address_after_its_components(
    sf: Salesforce, sobject: str, compound: str, prefix: str
) -> None:
    fields = getattr(sf, sobject).describe()["fields"]
    names = [f["name"] for f in fields]
    parts = [prefix + part for part in ADDRESS_PARTS]
    assert [f["name"] for f in fields if f["compoundFieldName"] == compound] == parts
    assert names.index(compound) == names.index(parts[-1]) + 1
    described = fields[names.index(compound)]
    assert {k: described[k] for k in ("type", "soapType", "length", "byteLength", "compoundFieldName")} == {
        "type": "address", "soapType": "urn:address", "length": 0, "byteLength": 0, "compoundFieldName": None
    }  # fmt: skip
    flags = ("createable", "updateable", "filterable", "sortable", "groupable", "nillable", "permissionable")
    assert {k: described[k] for k in flags} == {
        "createable": False, "updateable": False, "filterable": True, "sortable": False,
        "groupable": False, "nillable": True, "permissionable": False,
    }  # fmt: skip
    street, city, state, postal, _, latitude, _, accuracy = (fields[names.index(p)] for p in parts)
    assert (street["type"], street["extraTypeInfo"], street["length"]) == ("textarea", "plaintextarea", 255)
    assert (city["type"], city["extraTypeInfo"], city["byteLength"]) == ("string", None, 120)
    assert state["label"].endswith("State/Province") and postal["label"].endswith("Zip/Postal Code")
    assert (latitude["type"], latitude["precision"], latitude["scale"]) == ("double", 18, 15)
    assert (accuracy["type"], accuracy["length"], accuracy["restrictedPicklist"]) == ("picklist", 40, True)
    assert {"value": "NearAddress", "label": "Near Address"}.items() <= accuracy["picklistValues"][1].items()
    assert all(f["createable"] and f["sortable"] for f in fields if f["compoundFieldName"] == compound)


def test_describe_has_a_geolocation_custom_field(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Subscription__c.describe()["fields"]}
    location = fields["Location__c"]
    assert (location["type"], location["soapType"], location["custom"]) == ("location", "urn:location", True)
    assert not (location["createable"] or location["updateable"] or location["sortable"])
    for part in ("Location__Latitude__s", "Location__Longitude__s"):
        assert (fields[part]["type"], fields[part]["custom"], fields[part]["compoundFieldName"]) == (
            "double", True, "Location__c"
        )  # fmt: skip
        assert fields[part]["createable"] and fields[part]["scale"] == 6


def test_rest_reads_give_a_compound_as_a_nested_object_or_null(
    sf: Salesforce, unique: Callable[[], str]
) -> None:
    company = unique()
    placed = lead(
        Company=company,
        LastName="A",
        Street="1 Main St\nSuite 2",
        City="Springfield",
        Latitude=37.7749,
        Longitude=-122.4194,
        GeocodeAccuracy="Street",
    )
    expected = {
        "city": "Springfield",
        "country": None,
        "geocodeAccuracy": "Street",
        "latitude": 37.7749,
        "longitude": -122.4194,
        "postalCode": None,
        "state": None,
        "street": "1 Main St\nSuite 2",
    }
    first = sf.Lead.create(placed)["id"]
    blanks = [lead(Company=company, LastName=f"B{i:03d}") for i in range(200)]
    records = [{"attributes": {"type": "Lead"}, **fields} for fields in blanks]
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    blank = created[0]["id"]
    got = sf.Lead.get(first)["Address"]
    assert got == expected and list(got) == list(expected)  # Salesforce's key order
    assert sf.Lead.get(blank)["Address"] is None  # all components null: the compound is null
    assert sf.Lead.get(first, params={"fields": "Address"})["Address"] == expected  # only fields asked for

    # query and queryMore (batches of 200: the 201st record is on the second page)
    query = f"SELECT Id, Address FROM Lead WHERE Company = '{company}' ORDER BY LastName DESC"
    page = sf.query(query, headers={"Sforce-Query-Options": "batchSize=200"})
    later = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    assert [r["Address"] for r in later["records"]] == [expected]
    assert all(r["Address"] is None for r in page["records"])

    # through a parent relationship, and geolocations
    account = sf.Account.create({"Name": company, "BillingCity": "Lyon", "ShippingCountry": "France"})["id"]
    contact = sf.Contact.create({"LastName": company, "AccountId": account})["id"]
    query = f"SELECT Account.BillingAddress, Account.ShippingAddress FROM Contact WHERE Id = '{contact}'"
    parent = sf.query(query)["records"][0]["Account"]
    assert (parent["BillingAddress"]["city"], parent["ShippingAddress"]["country"]) == ("Lyon", "France")
    paris = {"Location__Latitude__s": 48.8566, "Location__Longitude__s": 2.3522}
    located = sf.Subscription__c.create({"Name": company, "Contact__c": contact, **paris})["id"]
    assert sf.Subscription__c.get(located)["Location__c"] == {"latitude": 48.8566, "longitude": 2.3522}
    nowhere = sf.Subscription__c.create({"Name": company, "Contact__c": contact})["id"]
    assert sf.Subscription__c.get(nowhere)["Location__c"] is None


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Id, Address FROM Lead",
        "SELECT Id, BillingAddress FROM Account",
        "SELECT Id, Account.ShippingAddress FROM Contact",
        "SELECT Id, Location__c FROM Subscription__c",
    ],
)
def test_bulk_query_refuses_compound_fields(sf: Salesforce, query: str) -> None:
    response = post_query_job(sf, query)
    assert (response.status_code, response.json()) == (400, BULK_REFUSAL)


def test_bulk_query_reads_the_components(sf: Salesforce, unique: Callable[[], str]) -> None:
    company = unique()
    sf.Lead.create(lead(Company=company, City="Oslo", Latitude=59.9139, GeocodeAccuracy="City"))
    query = f"SELECT City, Latitude, GeocodeAccuracy, State FROM Lead WHERE Company = '{company}'"
    assert "".join(sf.bulk2.Lead.query(query, wait=0)).splitlines() == [
        '"City","Latitude","GeocodeAccuracy","State"',
        '"Oslo","59.9139","City",',
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT Id FROM Lead WHERE Address != null", "Address fields can only be filtered using Distance"),
        ("SELECT Id FROM Contact WHERE Account.BillingAddress = null", "Address fields can only be filtered"),
        ("SELECT Id FROM Subscription__c WHERE Location__c = null", "Location fields can only be filtered"),
        ("SELECT Id FROM Account ORDER BY BillingAddress", "field 'BillingAddress' can not be sorted"),
    ],
)
def test_compound_fields_cannot_filter_or_sort(sf: Salesforce, query: str, message: str) -> None:
    error = error_of(lambda: sf.query(query))
    assert error["errorCode"] == "INVALID_FIELD" and message in error["message"]


def test_writes_to_a_compound_are_refused_and_its_components_are_writable(
    sf: Salesforce, unique: Callable[[], str]
) -> None:
    account = sf.Account.create({"Name": unique()})["id"]
    error = error_of(lambda: sf.Account.update(account, {"BillingAddress": {"city": "Paris"}}))
    assert error == {
        "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
        "message": "Unable to create/update fields: BillingAddress. Please check the security settings of "
        "this field and verify that it is read/write for your profile or permission set.",
        "fields": ["BillingAddress"],
    }
    error = error_of(lambda: sf.Lead.create(lead(Address={"city": "Paris"})))
    assert (error["errorCode"], error["fields"]) == ("INVALID_FIELD_FOR_INSERT_UPDATE", ["Address"])
    sf.Account.update(account, {"BillingCity": "Paris", "BillingGeocodeAccuracy": "City"})
    assert sf.Account.get(account)["BillingAddress"]["city"] == "Paris"
    error = error_of(lambda: sf.Account.update(account, {"BillingGeocodeAccuracy": "Galaxy"}))
    assert error["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def hide(document: dict, field: str) -> dict:
    """The org definition with ``field`` of Contact hidden from the integration user."""
    profile = next(p for p in document["profiles"] if p["name"] == "Integration User")
    profile["hidden_fields"]["Contact"].append(field)
    return document


def test_field_level_security_hides_a_compound_with_its_components(org_definition, private_org) -> None:
    with private_org(org_file=org_definition(lambda document: hide(document, "OtherAddress"))) as org:
        integration, admin = (Salesforce(**org.salesforce_kwargs(user)) for user in ("integration", "admin"))
        hidden = {f"Other{part}" for part in ADDRESS_PARTS} | {"OtherAddress"}
        visible = {f["name"] for f in integration.Contact.describe()["fields"]}
        assert not visible & hidden and "MailingAddress" in visible
        assert hidden <= {f["name"] for f in admin.Contact.describe()["fields"]}
        contact = admin.Contact.create({"LastName": "Hidden", "OtherCity": "Bergen"})["id"]
        assert admin.Contact.get(contact)["OtherAddress"]["city"] == "Bergen"
        assert not set(integration.Contact.get(contact)) & hidden
        for query in ("SELECT OtherAddress FROM Contact", "SELECT OtherCity FROM Contact"):
            assert error_of(lambda q=query: integration.query(q))["errorCode"] == "INVALID_FIELD"
        error = error_of(lambda: integration.Contact.update(contact, {"OtherCity": "Oslo"}))
        assert error["errorCode"] == "INVALID_FIELD"

    # Salesforce sets the field-level security of an address as a whole, never of one component.
    with pytest.raises(pydantic.ValidationError, match="hide the compound field"):
        OrgDef.model_validate(hide(yaml.safe_load(DEFAULT_ORG_FILE.read_text()), "OtherCity"))


@pytest.mark.parametrize("sobject", ["Lead", "Contact", "Account", "Subscription__c"])
def test_the_sync_never_selects_a_compound_field(sf: Salesforce, sobject: str) -> None:
    describe = getattr(sf, sobject).describe()
    synced = [c.field for c in columns.synced(describe)]
    compounds = {f["name"] for f in describe["fields"] if f["type"] in columns.COMPOUND_TYPES}
    parts = {f["name"] for f in describe["fields"] if f["compoundFieldName"]}
    assert compounds and parts <= set(synced) and not compounds & set(synced)
    query = soql.delta_query(sobject, synced, "SystemModstamp", None, datetime.now(UTC)) + " LIMIT 5"
    assert post_query_job(sf, query).status_code == 200  # Bulk takes the sync's query
