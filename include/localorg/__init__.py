"""localorg: a Salesforce-compatible HTTPS server for tests and the demo.

Start it with ``python -m localorg serve [--port 8443] [--data DIR] [--session-timeout S] [--api-limit N]
[--profile instant|realistic]``.
The data directory defaults to ``.sfsync/localorg`` under the project root. The first start creates
the org there: ``org.sqlite`` (records survive restarts) and a local certificate authority,
``ca.pem``, that clients trust through ``REQUESTS_CA_BUNDLE``; later starts reuse both. The directory
and everything in it (the server's private key, the admin token, records) are readable by their owner
only: 0700 and 0600, tightened again whenever an org opens the directory.
``python -m localorg connection`` prints the connection settings without serving.

Users (declared in ``org.yaml``; log in with password + security token):

- ``admin@localorg.test`` / ``localorg-admin`` / token ``ADMINTOKEN``: System Administrator, sees all.
- ``integration@localorg.test`` / ``localorg-integration`` / token ``INTEGRATIONTOKEN``: the sync user;
  cannot see ``Lead.Internal_Rating__c`` or ``Contact.Birthdate``, nor records owned by the
  Confidential role (``hidden@localorg.test``).
- ``sales@localorg.test`` and ``hidden@localorg.test``: standard users in the Sales and Confidential roles.
- Connected app for OAuth: consumer key ``localorg-consumer-key``, secret ``localorg-consumer-secret``
  (client credentials run as the integration user). ``POST /services/oauth2/token`` takes the password,
  client_credentials and refresh_token grants. Each user has a refresh token for the app (the web-server
  flow's, which Singer's and Airbyte's connectors use), printed by ``python -m localorg connection`` and
  kept in ``org.sqlite``: it lasts across restarts until revoked (``POST /services/oauth2/revoke``
  ``token=...``, which also ends the access tokens obtained with it; the next ``connection`` prints a new
  one). A refresh answers no new refresh token; an unknown or revoked one answers 400 ``invalid_grant``
  "expired access/refresh token".

Airflow connection (``REQUESTS_CA_BUNDLE`` must point at ``ca.pem``)::

    AIRFLOW_CONN_SALESFORCE_DEFAULT='{"conn_type":"salesforce","login":"integration@localorg.test",
      "password":"localorg-integration","extra":{"security_token":"INTEGRATIONTOKEN",
      "domain":"127.0.0.1:8443/?","version":"59.0"}}'

For tests, ``localorg.testing.running_org`` starts a server in a subprocess on a free port.

Latency profile (``localorg.profile``; the banner prints it): ``instant``, the default, answers every call
and finishes every Bulk job as fast as the machine allows. ``realistic`` is as slow as a real org, so that
many calls or many small Bulk jobs cost what they cost against Salesforce: every API request, logins
included, waits 150 ms (``--rest-latency-ms``) on the event loop, other requests going on meanwhile; a Bulk
API 2.0 job (or a Bulk API 1.0 batch) stays InProgress for 2.5 s (``--bulk-job-seconds``) plus 1 s per
10,000 records of a query and 5 s per 10,000 of an ingest (``--bulk-query-seconds-per-10k``,
``--bulk-ingest-seconds-per-10k``), and at most 5 queries and 5 ingest jobs are processed at once
(``--bulk-query-concurrency``, ``--bulk-ingest-concurrency``); later ones wait, queued. Each option
overrides either profile's value; no randomness. ``running_org(..., profile="realistic")`` takes a name
or a ``Profile``.

Bulk API 2.0 (``/services/data/vXX.X/jobs/query`` and ``jobs/ingest``, ``sf.bulk2``): query and
queryAll jobs (same SOQL compiler and visibility as REST; COUNT() and OFFSET refused with INVALIDJOB;
CSV with every value quoted, nulls empty, ``maxRecords``/``locator`` paging streamed from a spool
file) and insert/update/upsert/delete/hardDelete ingest jobs through the store's write path
(``#N/A`` sets null, an empty field leaves the value alone). hardDelete needs the profile flag
``bulk_api_hard_delete`` (System Administrator has it, the integration user does not). Jobs live for
the server's lifetime. A status GET of a running job is answered as soon as the job ends (or is
aborted), or after ``bulk.STATUS_HOLD_SECONDS`` (5 s) with its state then: the same JSON and the same one
API call as Salesforce's immediate answer, only later; held polls take no request thread.

Bulk API 1.0 (``/services/async/XX.X/job``, the session in ``X-SFDC-Session``; ``Authorization`` is not
read there): query and queryAll jobs with ``contentType`` CSV, created from a JSON or XML ``jobInfo``
(job answers and errors in the request's format: ``{"exceptionCode","exceptionMessage"}`` or ``<error>``,
status 400), closed or aborted by a POST of ``state``. A batch is a SOQL body (text/csv) run by the Bulk
API 2.0 machinery; batch info, batch lists and result lists are XML; a bad query fails the batch with
``InvalidBatch : Failed to process query: CODE: message``; a result with no rows reads "Records not found
for this query". ``Sforce-Enable-PKChunking`` (``TRUE``, ``chunkSize=N`` up to 250,000, default 100,000,
``startRow=Id``) turns the first batch NotProcessed and adds a batch per Id range of N rows of the table
(deleted rows count), on custom objects and the standard objects Salesforce chunks, for queries with no
clause but WHERE. Batch polls are held like Bulk API 2.0 status polls; each batch counts in
``DailyBulkApiBatches``.

Composite (``POST /services/data/vXX.X/composite``, ``{"allOrNone", "collateSubrequests",
"compositeRequest": [{"method", "url", "referenceId", "body"?, "httpHeaders"?}]}``): up to 25 subrequests
(at most 5 of them query/queryAll/sObject Collections; more answer 400 LIMIT_EXCEEDED), run in order through
the same dispatch as standalone requests, as the caller, with their own ``httpHeaders`` (e.g.
``Sforce-Query-Options``); Accept, Authorization and Content-Type are inherited and may not be set. Only
sObject, query/queryAll and sObject Collections resources are allowed (anything else, such as Bulk jobs or
composite itself, answers 400 INVALID_API_INPUT before any subrequest runs). ``@{ref.id}`` and
``@{ref.records[0].Id}`` in a later url or body read an earlier response; an unresolvable reference (for
instance to a failed subrequest) fails that subrequest with PROCESSING_HALTED. ``allOrNone: true`` runs all
writes in one transaction (overriding sObject Collections' own flag): the first failure keeps its error,
every other subrequest answers 400 PROCESSING_HALTED, and nothing is committed. The answer is 200
``{"compositeResponse": [{"body", "httpHeaders", "httpStatusCode", "referenceId"}]}`` in request order, and
the whole request counts as ONE API call (usage counter and ``Sforce-Limit-Info``).

Record lifecycle: REST delete moves records to the recycle bin (queryAll and ``deleted/`` see them);
after 15 days (``admin purge --expired``, also run at server start) or an explicit purge, and at once
for Bulk hardDelete, records leave every read path except ``deleted/``, which keeps reporting them
for 15 days more. A converted lead is read-only (CANNOT_UPDATE_CONVERTED_LEAD).

Compound fields (``type: address`` or ``location`` in ``org.yaml``, after their declared components:
``BillingAddress`` over ``BillingStreet`` ... ``BillingGeocodeAccuracy``, ``Location__c`` over
``Location__Latitude__s``/``__Longitude__s``): REST reads give a nested object (null when every component
is), Bulk 2.0 query jobs selecting one are refused (API_ERROR "Selecting compound data not supported in
Bulk Query"), WHERE answers INVALID_FIELD (DISTANCE() is not modelled), writes answer
INVALID_FIELD_FOR_INSERT_UPDATE; field-level security hides a compound with its components.

Admin endpoints (POST JSON; header ``X-Localorg-Admin-Token: <DATA/admin-token>`` acting as
``"asUser"`` (default admin@localorg.test), or ``Authorization: Bearer <session of a System
Administrator>``):

- ``/localorg/admin/undelete`` ``{"ids": [...]}``: restore from the recycle bin (with cascaded children).
- ``/localorg/admin/purge`` ``{"ids": [...]}`` or ``{"expired": true}``: empty the recycle bin.
- ``/localorg/admin/merge`` ``{"masterId", "duplicateIds": [1 or 2 Ids]}``: Leads, Contacts or Accounts.
- ``/localorg/admin/convert-lead`` ``{"leadId", "accountId"?, "contactId"?, "doNotCreateOpportunity"?,
  "opportunityName"?, "convertedStatus"?}``.
- ``/localorg/admin/faults``: GET lists, POST adds a rule (or a list) ``{"kind", "route"?, "method"?,
  "probability"?, "count"?, "latency_ms"?, "message"?}``, DELETE (or DELETE ``faults/<id>``) clears.
  Kinds are listed in ``localorg.faults.KINDS``.

CLI: ``python -m localorg admin [--data DIR] [--port P] [--as-user U] undelete|purge|merge|convert-lead
|faults ...`` (through the server on ``--port``, else directly on the data directory; faults need a
server); ``python -m localorg seed --data DIR --seed N --count LEADS [--objects Account=100,...]
[--as-of YYYY-MM-DD]``; ``python -m localorg activity --data DIR --rate N [--duration S]``.
The daily API limit counts requests over a rolling 24 hours.
"""

from pathlib import Path

DEFAULT_PORT = 8443
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / ".sfsync" / "localorg"
