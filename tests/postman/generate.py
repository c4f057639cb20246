"""The Postman collection of the API, generated from its OpenAPI document.

    .venv/bin/python tests/postman/generate.py           # (re)write pgfleet.postman_collection.json
    .venv/bin/python tests/postman/generate.py --check   # exit 1 when the committed one is stale

`make postman` runs the first. The OpenAPI document is the one the gateway serves at
/api/v1/openapi.json, built in-process (no stack needed). openapi-to-postmanv2 (the converter
Postman itself uses; `make install` puts it under .venv/node) turns every operation into a
request; convert.js seeds its example faker so the output is the same on every run.

Around the converted requests the collection adds what makes them meaningful against a live
stack, in the order newman runs them:

1. "Lifecycle: a single instance" creates an instance, polls its operation, reads it, lists
   it, deletes it, polls the delete and reads the 404; each step chains ids into collection
   variables from its test script.
2. "Setup" creates the resources the generated requests act on (an instance with a tenant, a
   replica and a completed backup, a verification and a recovery of that backup, a one-node
   cluster with a tenant and a completed backup, and an instance and a cluster for the
   generated DELETEs) and keeps their ids in collection variables.
3. "API (generated from the OpenAPI document)": the converter's requests in its folders (one
   per path segment), with every path parameter bound to a real id (FIXTURES), placeholder body fields
   filled (enum fields with their first value, FIELD_VALUES) or dropped when optional. Each
   gets a test that it is not a server error and that a 4xx answers the error shape
   {"error": {"code", "message", "details", "request_id"}}. Within a folder they run reads
   first, then writes, actions (in ACTION_ORDER), deletes; the operations a request starts run
   to their end before the next request (but those nothing after waits on: _last_word), so each
   request meets its resource at rest. A 409 that remains is the API's answer to the state
   the request found. The converter's example responses are left out (faked values; the
   OpenAPI document has the schemas).
4. "Teardown" deletes every instance and cluster the run created (all are named "postman-..."),
   one after another, each delete waited for, and checks that none is left.

The lifecycle and setup folders use {{operatorToken}} (an operator of one tenant), the rest
the collection's {{token}} (a platform admin). local.postman_environment.json holds baseUrl
and both tokens for `make up`: mint them with `pgfleet token --role admin --plan system` and
`pgfleet token --role operator --tenant acme --plan system` (the run's polls count against
the rate limit too).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COLLECTION = HERE / "pgfleet.postman_collection.json"
ENVIRONMENT = HERE / "local.postman_environment.json"
NODE_MODULES = Path(os.environ.get("PGFLEET_NODE_MODULES", REPO / ".venv" / "node" / "node_modules"))
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
CONVERTER_OPTIONS = {
    "folderStrategy": "Paths",
    "parametersResolution": "Example",
    "enableOptionalParameters": False,  # optional query parameters are listed, not sent
    "alwaysInheritAuthentication": True,  # every request takes the collection's bearer token
    "requestNameSource": "Fallback",  # the operation's summary
    "indentCharacter": "Space",
}
GENERATED = "API (generated from the OpenAPI document)"
PREFIX = "postman-"  # every resource the collection creates is named so; teardown deletes them
DEFAULT_BASE_URL = "http://127.0.0.1:8080"

# Path parameter -> the collection variable holding a real id for it. resource_id depends on
# the path; the DELETE of a whole instance or cluster gets one made for it.
FIXTURES = {
    "operation_id": "operationId",
    "instance_id": "instanceId",
    "replica_id": "replicaId",
    "tenant_id": "tenantId",
    "backupId": "backupId",
    "verificationId": "verificationId",
    "recoveryId": "recoveryId",
    "alert_id": "alertId",
    "targetId": "instanceId",
    "migration_id": "migrationId",
    "sessionPid": "sessionPid",
    "channel_id": "channelId",
    "incident_id": "incidentId",
    "rule_name": "ruleName",
    "task_id": "taskId",
    "execution_id": "executionId",
    "optimization_id": "optimizationId",
    "window_id": "windowId",
    "thresholdId": "thresholdId",
    "vulnerability_id": "vulnerabilityId",
    "threat_id": "threatId",
    "assessment_id": "assessmentId",
}
# Body fields the converter leaves as a placeholder ("<string>", "<integer>"...) -> a value.
FIELD_VALUES: dict[str, Any] = {
    "tenant_id": "shop-b",
    "backup_id": "{{backupId}}",
    "backupId": "{{backupId}}",
    "targetId": "{{instanceId}}",
    "source_id": "{{instanceId}}",
    "target_type": "cluster",
    "node_id": "n1",
    "node_count": 1,
    "cpu": 1,
    "memory": 2048,
    "storage": 20,
    "max_storage_mb": 1024,
    "max_connections": 50,
    "full_backup_cron": "0 3 * * ? *",
    "resolutionNote": "resolved from the Postman collection",
    "target_version": "18",
    "reason": "checked from the Postman collection",
    "timeRange": "1h",
    "aggregation": "HOUR",
    "analysisType": "CURRENT",
    "channelId": "{{channelId}}",
    "note": "from the Postman collection",
    "framework": "HIPAA",
}
# The seed's example security incident (a platform admin declares it: operators hold no security:*).
POSTMAN_SECURITY_INCIDENT = {
    "incident_type": "UNAUTHORIZED_ACCESS",
    "severity": "LOW",
    "description": "Unauthorized access attempt, declared from the Postman collection",
    "affected_systems": ["auth-service"],
    "detection_method": "Postman collection",
}
# A nightly VACUUM of the Setup instance; dry runs only in the generated requests.
POSTMAN_TASK = {
    "taskName": PREFIX + "vacuum",
    "taskType": "VACUUM",
    "targetId": "{{instanceId}}",
    "schedule": {"frequency": "DAILY", "cronExpression": "0 3 * * *"},
}
POSTMAN_THRESHOLD = {
    "thresholdName": PREFIX + "storage",
    "resourceType": "STORAGE",
    "thresholdPercentage": 85,
    "thresholdType": "WARNING",
    "alertEnabled": True,
    "notificationChannels": [],
}
POSTMAN_WINDOW = {"name": PREFIX + "night", "startTime": "01:00", "endTime": "05:00"}
# A channel nothing listens behind: its test send answers FAILED, with the reason.
POSTMAN_CHANNEL = {
    "type": "WEBHOOK",
    "name": PREFIX + "hook",
    "configuration": {"url": "http://127.0.0.1:9/postman", "secret": "postman-secret-0123456789"},
}
# Concrete defaults the converter copied that would make a run needlessly heavy: a three-node
# cluster; a second recovery into a new instance (Setup ran one: this one asks for the plan).
BODY_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/postgres/cluster"): {"node_count": 1},
    ("POST", "/api/v1/backup/recovery/initiate"): {"validateOnly": True},
    # An upgrade changes the major version under the rest of the run: its pre-flight only.
    ("POST", "/api/v1/postgres/single/{resource_id}/upgrade"): {"dry_run": True},
    ("POST", "/api/v1/postgres/cluster/{resource_id}/upgrade"): {"dry_run": True},
    # Looks, never ends a session.
    ("POST", "/api/v1/locks/blocking-sessions/{sessionPid}/terminate"): {"dryRun": True},
    ("POST", "/api/v1/locks/auto-resolve"): {"dryRun": True},
    ("PUT", "/api/v1/locks/auto-resolve/config"): {"enabled": False},
    ("POST", "/api/v1/monitoring/notifications/channels"): POSTMAN_CHANNEL,
    ("PUT", "/api/v1/monitoring/notifications/channels/{channel_id}"): {"name": PREFIX + "hook-renamed"},
    ("PUT", "/api/v1/monitoring/alerts/rules/{rule_name}"): {"threshold": 30},
    # Explains a harmless statement; the optimize request only plans (an unknown id: 404).
    # A pooler has its own e2e; here the request only says "no pooler" (a no-op for the run).
    ("POST", "/api/v1/performance/connections/configure"): {
        "targetId": "{{instanceId}}",
        "poolerConfiguration": {"enabled": False},
    },
    ("POST", "/api/v1/performance/queries/analyze"): {"targetId": "{{instanceId}}", "queryText": "SELECT 1"},
    ("POST", "/api/v1/performance/indexes/optimize"): {
        "recommendations": ["idx-000000000000"],
        "dryRun": True,
        "maintenanceWindow": None,
    },
    # A reload-level change of the Setup instance (a restart-level one has its own e2e).
    ("PUT", "/api/v1/system/configuration"): {
        "section": "DATABASE",
        "targetId": "{{instanceId}}",
        "configuration": {"work_mem": "8MB"},
        "applyImmediately": False,
        "scheduleRestart": None,
    },
    ("POST", "/api/v1/capacity/utilization/capture"): {
        "targetId": "{{instanceId}}",
        "tenantId": None,
        "resourceTypes": None,
    },
    ("POST", "/api/v1/capacity/growth/analyze"): {
        "targetId": "{{instanceId}}",
        "tenantId": None,
        "resourceType": None,
        "analysisDays": 30,
    },
    ("POST", "/api/v1/capacity/thresholds"): {**POSTMAN_THRESHOLD, "tenantId": None, "targetId": None},
    ("PUT", "/api/v1/capacity/thresholds/{thresholdId}"): {
        "thresholdPercentage": 88,
        "alertEnabled": True,
        "notificationChannels": None,
        "escalationEnabled": None,
        "isActive": None,
    },
    ("POST", "/api/v1/capacity/thresholds/evaluate"): {"tenantId": None, "targetId": "{{instanceId}}"},
    ("POST", "/api/v1/capacity/analysis/run"): {
        "tenantId": None,
        "createDefaultThresholds": False,
        "analysisDays": 7,
    },
    ("POST", "/api/v1/maintenance/tasks"): {
        **POSTMAN_TASK,
        "taskSQL": None,
        "taskFunction": None,
        "tenantId": None,
        "database": None,
    },
    ("PUT", "/api/v1/maintenance/tasks/{task_id}"): {
        "description": "changed from the Postman collection",
        "schedule": {"frequency": "DAILY", "cronExpression": "0 4 * * *", "maintenanceWindow": None},
    },
    ("POST", "/api/v1/maintenance/tasks/{task_id}/execute"): {"dryRun": True},
    ("POST", "/api/v1/maintenance/optimize/database"): {
        "maintenanceWindow": None,
        "targetId": "{{instanceId}}",
        "optimizationType": "VACUUM",
        "dryRun": True,
    },
    ("POST", "/api/v1/maintenance/cleanup/data"): {"categories": ["MONITORING"], "dryRun": True},
    ("POST", "/api/v1/maintenance/schedule/optimize"): {
        "timeHorizon": 24,
        "apply": False,
        "constraints": {
            "maxConcurrentTasks": 1,
            "maintenanceWindows": [],
            "excludedTimeRanges": [],
            "resourceLimits": None,
        },
    },
    ("POST", "/api/v1/maintenance/windows"): POSTMAN_WINDOW,
    ("PUT", "/api/v1/maintenance/windows/{window_id}"): {"name": PREFIX + "night-renamed"},
    ("POST", "/api/v1/security/incidents/create"): {"description": "declared from the Postman collection"},
    ("PUT", "/api/v1/security/incidents/{incident_id}/status"): {
        "status": "INVESTIGATING",
        "status_notes": "from the Postman collection",
    },
    # Notes only: a mitigation blocks a real source (the e2e tests apply them).
    ("POST", "/api/v1/security/threats/investigate"): {
        "threat_id": "{{threatId}}",
        "investigation_status": "INVESTIGATING",
        "assigned_to": "postman",
        "investigation_notes": "from the Postman collection",
        "mitigation_actions": [],
        "apply_mitigations": [],
        "lift_mitigations": [],
    },
    # A note on the Setup's remediation task: verifying it is a compliance officer's (e2e).
    ("PUT", "/api/v1/compliance/remediation/tasks/{task_id}"): {
        "status": "IN_PROGRESS",
        "progress_notes": "from the Postman collection",
        "evidence_file": None,
        "completion_evidence": None,
        "verification_status": None,
        "assigned_to": None,
        "actual_effort_hours": None,
        "updated_by": None,
    },
    ("POST", "/api/v1/compliance/reports"): {"tenant_id": None},
    # Only the attested control: a FULL assessment of the fleet is the benchmark's.
    ("POST", "/api/v1/compliance/assessments/run"): {
        "framework": "HIPAA",
        "assessment_type": "TARGETED",
        "tenant_id": None,
        "specific_controls": ["SECURITY-OFFICER"],
    },
    ("POST", "/api/v1/monitoring/incidents/{incident_id}/update"): {
        "actionType": "NOTE",
        "note": "from the Postman collection",
    },
}
PLACEHOLDER = re.compile(r"^<[a-zA-Z-]+>$")
# The run order within a folder: its sub-folders first, then reads, writes, actions, deletes;
# actions (POST .../<verb>) in this order, which leaves each one its starting state (restart
# and resize a running resource, resume the paused one, start the stopped one...).
METHOD_ORDER = {"GET": 0, "HEAD": 0, "PUT": 1, "PATCH": 1, "POST": 2, "DELETE": 3}
ACTION_ORDER = ("restart", "resize", "scale", "promote", "pause", "resume", "stop", "start", "restore")


# --- scripts ----------------------------------------------------------------------------------

CHECKS = """\
pm.test('not a server error', function () {
  pm.expect(pm.response.code, pm.response.text()).to.be.below(500);
});
if (pm.response.code >= 400 && pm.response.code < 500) {
  pm.test('a 4xx answers the error shape', function () {
    const body = pm.response.json();
    pm.expect(Object.keys(body)).to.eql(['error']);
    pm.expect(body.error).to.have.all.keys('code', 'message', 'details', 'request_id');
    pm.expect(body.error.code).to.be.a('string');
    pm.expect(body.error.message).to.be.a('string');
  });
}"""


# A helper every waiting script starts with: send `request` until `done(response)` says so,
# at most `seconds`, 250 ms apart at first and 2 s at most (the rate limiter counts polls too);
# a 429 waits for its Retry-After (5 s at most, then asks again).
POLL = """\
function poll(request, done, seconds, then) {
  const deadline = Date.now() + seconds * 1000;
  const auth = {Authorization: 'Bearer ' + pm.variables.get(request.token || 'operatorToken')};
  let pause = 250;
  (function again() {
    pm.sendRequest({url: pm.variables.replaceIn('{{baseUrl}}' + request.path), method: request.method || 'GET',
                    header: auth}, function (err, res) {
      if (!err && res && done(res)) { return then(res); }
      if (Date.now() > deadline) { return then(res || null); }
      const wait = res && res.code === 429 ? 1000 * Number(res.headers.get('Retry-After') || 1) : pause;
      pause = Math.min(pause * 1.5, 2000);
      setTimeout(again, Math.min(wait, 5000));
    });
  })();
}"""


# After a generated request, the operations it started run to their end before the next
# request: each request meets its resource at rest, not busy with the previous one. The
# outcome is logged; whether it succeeded is the business of the tests that own the workflow.
SETTLE = """
const accepted = pm.response.code === 202 ? pm.response.json() : {};
[].concat(accepted.operation_id || [], accepted.operation_ids || []).forEach(function (opId) {
  poll({path: '/api/v1/operations/' + opId, token: 'token'}, function (res) {
    return res.code === 200 && ['succeeded', 'failed'].includes(res.json().status);
  }, 120, function (res) {
    console.log('operation ' + opId + ': ' + (res && res.code === 200 ? res.json().status : 'still running'));
  });
});"""


def _wait_operation(variable: str) -> str:
    return (
        POLL
        + f"""
const opId = pm.collectionVariables.get('{variable}');
const terminal = function (res) {{ return res.code === 200 && ['succeeded', 'failed'].includes(res.json().status); }};
const first = pm.response.code === 200 && pm.response.json();
const finish = function (res) {{
  const op = res && res.code === 200 ? res.json() : {{}};
  pm.test('operation ' + opId + ' succeeded', function () {{
    pm.expect(op.status, JSON.stringify(op)).to.eql('succeeded');
  }});
}};
if (first && terminal(pm.response)) {{ finish(pm.response); }}
else {{ poll({{path: '/api/v1/operations/' + opId}}, terminal, 240, finish); }}"""
    )


def _wait_backup(kind: str, resource: str, variable: str) -> str:
    """The first backup (it runs on its own after a create) completed: its id into `variable`."""
    return (
        POLL
        + f"""
const completed = function (res) {{
  return res.code === 200 && res.json().backups.some(function (b) {{ return b.status === 'completed'; }});
}};
const keep = function (res) {{
  const done = res && res.code === 200 ? res.json().backups.filter(function (b) {{ return b.status === 'completed'; }}) : [];
  pm.test('a completed backup', function () {{ pm.expect(done).to.not.be.empty; }});
  if (done.length) {{ pm.collectionVariables.set('{variable}', done[0].backup_id); }}
}};
if (completed(pm.response)) {{ keep(pm.response); }}
else {{ poll({{path: '/api/v1/postgres/{kind}/' + pm.collectionVariables.get('{resource}') + '/backups'}}, completed, 240, keep); }}"""
    )


def _expect(status: int) -> str:
    return f"""
pm.test('status is {status}', function () {{
  pm.response.to.have.status({status});
}});"""


def _keep(variable: str, expression: str) -> str:
    return f"\npm.collectionVariables.set('{variable}', {expression});"


def _request(
    name: str,
    method: str,
    path: str,
    tests: str,
    body: Any = None,
    token: str | None = "operatorToken",
) -> dict[str, Any]:
    segments = path.lstrip("/").split("?", 1)[0].split("/")
    query = [
        {"key": k, "value": v}
        for k, _, v in (
            pair.partition("=") for pair in (path.split("?", 1)[1].split("&") if "?" in path else [])
        )
    ]
    request: dict[str, Any] = {
        "method": method,
        "header": [{"key": "Accept", "value": "application/json"}],
        "url": {"raw": "{{baseUrl}}" + path, "host": ["{{baseUrl}}"], "path": segments, "query": query},
    }
    if token:
        request["auth"] = {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{" + token + "}}", "type": "string"}],
        }
    if body is not None:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    return {
        "name": name,
        "request": request,
        "event": [
            {"listen": "test", "script": {"type": "text/javascript", "exec": (CHECKS + tests).splitlines()}}
        ],
    }


def _folder(name: str, description: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "description": description, "item": items}


def lifecycle() -> dict[str, Any]:
    single = "/api/v1/postgres/single"
    return _folder(
        "Lifecycle: a single instance",
        "Create an instance, wait for its operation, read it, list it, delete it, wait, read the 404.",
        [
            _request(
                "Create an instance",
                "POST",
                single,
                _expect(202)
                + """
const made = pm.response.json();
pm.test('an instance id and an operation', function () {
  pm.expect(made.id).to.match(/^pgi-[0-9a-f]{12}$/);
  pm.expect(made.operation_id).to.match(/^op-/);
  pm.expect(made.credentials.password).to.be.a('string');
});"""
                + _keep("lifecycleId", "made.id")
                + _keep("lifecycleOperationId", "made.operation_id"),
                body={"name": PREFIX + "lifecycle"},
            ),
            _request(
                "Wait for the create operation",
                "GET",
                "/api/v1/operations/{{lifecycleOperationId}}",
                _wait_operation("lifecycleOperationId"),
            ),
            _request(
                "Read the instance",
                "GET",
                single + "/{{lifecycleId}}",
                _expect(200)
                + """
pm.test('it is running, with its name and no password', function () {
  const got = pm.response.json();
  pm.expect(got.id).to.eql(pm.collectionVariables.get('lifecycleId'));
  pm.expect(got.name).to.eql('"""
                + PREFIX
                + """lifecycle');
  pm.expect(got.status).to.eql('running');
  pm.expect(got).to.not.have.property('credentials');
});""",
            ),
            _request(
                "List instances",
                "GET",
                single,
                _expect(200)
                + """
pm.test('the list holds the instance', function () {
  const ids = pm.response.json().instances.map(function (i) { return i.id; });
  pm.expect(ids).to.include(pm.collectionVariables.get('lifecycleId'));
});""",
            ),
            _request(
                "Delete the instance",
                "DELETE",
                single + "/{{lifecycleId}}",
                _expect(202)
                + """
const gone = pm.response.json();
pm.test('a delete operation', function () { pm.expect(gone.operation_id).to.match(/^op-/); });"""
                + _keep("lifecycleOperationId", "gone.operation_id"),
            ),
            _request(
                "Wait for the delete operation",
                "GET",
                "/api/v1/operations/{{lifecycleOperationId}}",
                _wait_operation("lifecycleOperationId"),
            ),
            _request(
                "The deleted instance is not found",
                "GET",
                single + "/{{lifecycleId}}",
                _expect(404)
                + """
pm.test('not_found', function () { pm.expect(pm.response.json().error.code).to.eql('not_found'); });""",
            ),
        ],
    )


def _create(name: str, path: str, body: dict[str, Any], id_var: str, op_var: str) -> dict[str, Any]:
    return _request(
        name, "POST", path, _expect(202) + "\nconst made = pm.response.json();"
        + _keep(id_var, "made.id") + _keep(op_var, "made.operation_id"), body=body,
    )  # fmt: skip


def setup() -> dict[str, Any]:
    single, cluster = "/api/v1/postgres/single", "/api/v1/postgres/cluster"
    waits = [
        _request(f"Wait for {what}", "GET", "/api/v1/operations/{{" + var + "}}", _wait_operation(var))
        for what, var in (
            ("the instance", "operationId"), ("the instance to delete", "doomedOperationId"),
            ("the cluster", "clusterOperationId"), ("the cluster to delete", "doomedClusterOperationId"),
        )
    ]  # fmt: skip
    return _folder(
        "Setup",
        "Real resources for the generated requests; their ids go into collection variables.",
        [
            _create("Create the instance", single, {"name": PREFIX + "db"}, "instanceId", "operationId"),
            _create("Create an instance to delete", single, {"name": PREFIX + "doomed"},
                    "doomedInstanceId", "doomedOperationId"),
            _create("Create a one-node cluster", cluster, {"name": PREFIX + "ha", "node_count": 1},
                    "clusterId", "clusterOperationId"),
            _create("Create a cluster to delete", cluster, {"name": PREFIX + "doomed-ha", "node_count": 1},
                    "doomedClusterId", "doomedClusterOperationId"),
            *waits,
            _request("Add a tenant to the instance", "POST", single + "/{{instanceId}}/tenants",
                     _expect(201) + _keep("tenantId", "pm.response.json().tenant_id"), body={"tenant_id": "shop-a"}),
            _request("Add a tenant to the cluster", "POST", cluster + "/{{clusterId}}/tenants", _expect(201),
                     body={"tenant_id": "shop-a"}),
            _request("Add a read replica", "POST", single + "/{{instanceId}}/replicas", _expect(202)
                     + "\nconst added = pm.response.json();" + _keep("replicaId", "added.replicas[0].id")
                     + _keep("replicaOperationId", "added.operation_ids[0]"), body={"replica_count": 1}),
            _request("Wait for the replica", "GET", "/api/v1/operations/{{replicaOperationId}}",
                     _wait_operation("replicaOperationId")),
            _request("Wait for the instance's first backup", "GET", single + "/{{instanceId}}/backups",
                     _wait_backup("single", "instanceId", "backupId")),
            _request("Wait for the cluster's first backup", "GET", cluster + "/{{clusterId}}/backups",
                     _wait_backup("cluster", "clusterId", "clusterBackupId")),
            _request("Verify the backup", "POST", "/api/v1/backup/verify/{{backupId}}", _expect(202)
                     + _keep("verificationId", "pm.response.json().verificationId")),
            _request("Recover the backup into a new instance", "POST", "/api/v1/backup/recovery/initiate",
                     _expect(202) + _keep("recoveryId", "pm.response.json().recoveryId"),
                     body={"backupId": "{{backupId}}", "recoveryType": "FULL", "recoveryLocation": "NEW_INSTANCE"}),
            _request("An alert, if there is one", "GET", "/api/v1/monitoring/alerts", _expect(200) + """
const alerts = pm.response.json().alerts;
// No request raises an alert: without one, the alert requests get a well-formed unknown id (404).
pm.collectionVariables.set('alertId', alerts.length ? alerts[0].alertId : 'alert-000000000000');"""),
            _request("An incident, if there is one", "GET", "/api/v1/monitoring/incidents", _expect(200) + """
const incidents = pm.response.json().incidents;
pm.collectionVariables.set('incidentId', incidents.length ? incidents[0].incidentId : 'inc-000000000000');
pm.collectionVariables.set('ruleName', 'deadlocks');"""),
            _request("A vulnerability, if there is one", "GET", "/api/v1/security/vulnerabilities", _expect(200) + """
const found = pm.response.json().vulnerabilities;
// A fully patched fleet has none: the PUT then gets a well-formed unknown id (404).
pm.collectionVariables.set('vulnerabilityId', found.length ? found[0].vulnerability_id : 'vul-0000000000000000');""",
                     token="token"),
            _request("A security threat, if there is one", "GET", "/api/v1/security/threats/active?time_range=7d",
                     _expect(200) + """
const threats = pm.response.json().threats;
// A quiet fleet has none: the threat requests then get a well-formed unknown id (404).
pm.collectionVariables.set('threatId', threats.length ? threats[0].threat_id : 'thr-000000000000');""", token="token"),
            _request("Declare a security incident", "POST", "/api/v1/security/incidents/create",
                     _expect(201) + _keep("securityIncidentId", "pm.response.json().incident_id"),
                     body=POSTMAN_SECURITY_INCIDENT, token="token"),
            _request("The operator's tenant", "GET", single + "/{{instanceId}}",
                     _expect(200) + _keep("operatorTenant", "pm.response.json().tenant_id")),
            # An attested control: NOT_APPLICABLE until evidence is accepted, so it opens a task.
            _request("Assess the security official of the operator's tenant", "POST",
                     "/api/v1/compliance/assessments/run", _expect(202)
                     + _keep("assessmentId", "pm.response.json().assessment_id")
                     + _keep("assessmentOperationId", "pm.response.json().operation_id"),
                     body={"framework": "HIPAA", "assessment_type": "TARGETED", "tenant_id": "{{operatorTenant}}",
                           "specific_controls": ["SECURITY-OFFICER"]}, token="token"),
            _request("Wait for the assessment", "GET", "/api/v1/operations/{{assessmentOperationId}}",
                     _wait_operation("assessmentOperationId")),
            _request("A remediation task", "GET", "/api/v1/compliance/remediation/tasks?tenant_id={{operatorTenant}}",
                     _expect(200) + """
const tasks = pm.response.json().tasks;
pm.collectionVariables.set('complianceTaskId', tasks.length ? tasks[0].task_id : 'crt-000000000000');""",
                     token="token"),
            _request("Add a notification channel", "POST", "/api/v1/monitoring/notifications/channels",
                     _expect(201) + _keep("channelId", "pm.response.json().channelId"), body=POSTMAN_CHANNEL),
            _request("Add a maintenance task", "POST", "/api/v1/maintenance/tasks",
                     _expect(201) + _keep("taskId", "pm.response.json().taskId"), body=POSTMAN_TASK),
            _request("Dry-run the maintenance task", "POST", "/api/v1/maintenance/tasks/{{taskId}}/execute",
                     _expect(202) + _keep("executionId", "pm.response.json().executionId"), body={"dryRun": True}),
            _request("Dry-run an optimization", "POST", "/api/v1/maintenance/optimize/database",
                     _expect(202) + _keep("optimizationId", "pm.response.json().optimizationId"),
                     body={"targetId": "{{instanceId}}", "optimizationType": "ALL", "dryRun": True}),
            _request("Add a maintenance window", "POST", "/api/v1/maintenance/windows",
                     _expect(201) + _keep("windowId", "pm.response.json().windowId"), body=POSTMAN_WINDOW),
            _request("Add a capacity threshold", "POST", "/api/v1/capacity/thresholds",
                     _expect(201) + _keep("thresholdId", "pm.response.json().data.thresholdId"),
                     body=POSTMAN_THRESHOLD),
            _request("A session holding a lock, if there is one", "GET",
                     "/api/v1/locks/activity?targetId={{instanceId}}", _expect(200) + """
const locks = pm.response.json().locks;
// Without one, the terminate request asks for pid 1, never a session of a server: a 404.
pm.collectionVariables.set('sessionPid', locks.length ? String(locks[0].sessionPid) : '1');"""),
        ],
    )  # fmt: skip


def teardown() -> dict[str, Any]:
    return _folder(
        "Teardown",
        f"Delete every instance and cluster the run created (all are named {PREFIX}...); a busy one is "
        "retried until it accepts the delete, and each delete is waited for.",
        [
            _request("Delete what the run created", "GET", "/api/v1/postgres/single?limit=100", POLL + """
const prefix = '""" + PREFIX + """';
function named(res, key) {
  return res && res.code === 200 ? res.json()[key].filter(function (r) { return r.name.indexOf(prefix) === 0; }) : [];
}
function gone(key, kind, then) {  // the deletes have run: the stack is left as it was found
  poll({path: '/api/v1/postgres/' + kind + '?limit=100', token: 'token'}, function (r) {
    return r.code === 200 && named(r, key).length === 0;
  }, 180, function (r) {
    pm.test('no ' + key + ' named ' + prefix + '... are left', function () {
      pm.expect(named(r, key).map(function (x) { return x.id + ' ' + x.status; })).to.eql([]);
    });
    then();
  });
}
const instances = named(pm.response, 'instances');
pm.sendRequest({url: pm.variables.replaceIn('{{baseUrl}}/api/v1/postgres/cluster?limit=100'),
                header: {Authorization: 'Bearer ' + pm.variables.get('token')}}, function (err, res) {
  const doomed = instances.map(function (r) { return '/api/v1/postgres/single/' + r.id; })
    .concat(named(res, 'clusters').map(function (r) { return '/api/v1/postgres/cluster/' + r.id; }));
  (function next() {  // one after another: a busy one (409) is asked again until it accepts
    const path = doomed.shift();
    if (!path) { return gone('instances', 'single', function () { gone('clusters', 'cluster', function () {}); }); }
    poll({path: path, method: 'DELETE', token: 'token'}, function (r) { return r.code !== 409 && r.code !== 429; }, 120,
      function (r) {
        pm.test('DELETE ' + path + ' accepted (or already gone)', function () {
          pm.expect(r && r.code, r && r.text()).to.be.oneOf([202, 404]);
        });
        const opId = r && r.code === 202 && r.json().operation_id;
        if (!opId) { return next(); }
        poll({path: '/api/v1/operations/' + opId, token: 'token'}, function (o) {
          return o.code === 200 && ['succeeded', 'failed'].includes(o.json().status);
        }, 120, function (o) {
          pm.test('the delete of ' + path + ' succeeded', function () {
            pm.expect(o && o.code === 200 && o.json().status, o && o.text()).to.eql('succeeded');
          });
          next();
        });
      });
  })();
});""", token="token"),
        ],
    )  # fmt: skip


# --- the converted requests ---------------------------------------------------------------------


def _resolve(openapi: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """A schema with its $ref followed and an `anyOf [X, null]` reduced to X."""
    schema = schema or {}
    for _ in range(10):
        if "$ref" in schema:
            schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = options[0] if len(options) == 1 else schema
            if len(options) != 1:
                break
        else:
            break
    return schema


def _fill(openapi: dict[str, Any], value: Any, schema: dict[str, Any], where: str, names: list[str]) -> Any:
    """The converter's example body with its placeholders filled or dropped (see the module doc)."""
    schema = _resolve(openapi, schema)
    if isinstance(value, dict):
        props, required = schema.get("properties", {}), set(schema.get("required", ()))
        out = {}
        for key, item in value.items():
            sub = _resolve(openapi, props.get(key))
            if isinstance(item, str) and PLACEHOLDER.match(item):
                if key == "name":
                    names.append(key)
                    out[key] = f"{PREFIX}generated-{len(names)}"
                elif key in FIELD_VALUES:
                    out[key] = FIELD_VALUES[key]
                elif sub.get("enum"):
                    out[key] = sub["enum"][0]
                elif key in required:
                    print(
                        f"postman: {where}: no value for the required field {key!r}; it stays {item}",
                        file=sys.stderr,
                    )
                    out[key] = item
                continue  # an optional field without a value is left out
            out[key] = _fill(openapi, item, sub, f"{where}.{key}", names)
        return out
    if isinstance(value, list):
        items = [v for v in value if not (isinstance(v, str) and PLACEHOLDER.match(v))]
        return [_fill(openapi, v, schema.get("items", {}), where, names) for v in items]
    return value


def _route(request: dict[str, Any]) -> str:
    return "/" + "/".join(re.sub(r"^:(.+)$", r"{\1}", s) for s in request["url"]["path"])


def _bind(openapi: dict[str, Any], item: dict[str, Any], names: list[str]) -> None:
    request = item["request"]
    method, route = request["method"], _route(request)
    operation = openapi["paths"][route][method.lower()]
    for variable in request["url"].get("variable", []):
        name = variable["key"]
        if name == "resource_id":
            kind = "cluster" if route.startswith("/api/v1/postgres/cluster") else "instance"
            whole = method == "DELETE" and route.count("/") == 5  # /api/v1/postgres/<kind>/{resource_id}
            fixture = ("doomedClusterId" if kind == "cluster" else "doomedInstanceId") if whole else (
                "clusterId" if kind == "cluster" else "instanceId")  # fmt: skip
        elif name == "incident_id" and route.startswith("/api/v1/security/"):
            fixture = "securityIncidentId"  # a security incident, not a monitoring one
        elif name == "task_id" and route.startswith("/api/v1/compliance/"):
            fixture = "complianceTaskId"  # a remediation task, not a maintenance one
        else:
            fixture = FIXTURES.get(name, "")
        if not fixture:
            print(f"postman: {method} {route}: no fixture for the path parameter {name!r}", file=sys.stderr)
            continue
        variable["value"] = "{{" + fixture + "}}"
    for parameter in request["url"].get("query", []):
        # A required query parameter the converter left as a placeholder gets its field value.
        if isinstance(parameter.get("value"), str) and PLACEHOLDER.match(parameter["value"]):
            if parameter["key"] in FIELD_VALUES:
                parameter["value"] = str(FIELD_VALUES[parameter["key"]])
    body = request.get("body")
    if body and body.get("mode") == "raw" and body.get("raw"):
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        filled = _fill(openapi, json.loads(body["raw"]), schema, f"{method} {route}", names)
        filled.update(BODY_OVERRIDES.get((method, route), {}))
        if route.startswith("/api/v1/postgres/cluster/") and filled.get("backup_id") == "{{backupId}}":
            filled["backup_id"] = "{{clusterBackupId}}"  # a cluster restores from a backup of its own
        body["raw"] = json.dumps(filled, indent=2)
    script = CHECKS if _last_word(method, route) else CHECKS + "\n" + POLL + SETTLE
    item["event"] = [{"listen": "test", "script": {"type": "text/javascript", "exec": script.splitlines()}}]


def _last_word(method: str, route: str) -> bool:
    """Requests whose operations nothing after them waits on (the teardown asks again while
    they run): a create or a delete of a whole instance or cluster, and the last actions of a
    resource's folder (ACTION_ORDER). Not waiting for them keeps the run short."""
    whole = re.fullmatch(r"/api/v1/postgres/(single|cluster)(/\{resource_id\})?", route)
    return bool(whole and method in ("POST", "DELETE")) or route.rsplit("/", 1)[-1] in ("start", "restore")


def _strip(node: Any) -> Any:
    """Without the converter's random uuids (Postman adds its own) and its example responses
    (values faked from the schemas, three quarters of the file: the OpenAPI document has the
    schemas)."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("id", "_postman_id", "response")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _ordered(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The converter's tree in the run order of METHOD_ORDER and ACTION_ORDER (stable: the
    document's order otherwise)."""

    def key(item: dict[str, Any]) -> tuple[int, int]:
        if "item" in item:
            return (-1, 0)
        request = item["request"]
        verb = request["url"]["path"][-1]
        action = ACTION_ORDER.index(verb) if request["method"] == "POST" and verb in ACTION_ORDER else -1
        return (METHOD_ORDER.get(request["method"], 2), action)

    return sorted(({**i, "item": _ordered(i["item"])} if "item" in i else i for i in tree), key=key)


def _requests(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in tree:
        out.extend(_requests(item["item"]) if "item" in item else [item])
    return out


def openapi_document() -> dict[str, Any]:
    """What GET /api/v1/openapi.json answers, built in-process."""
    sys.path[:0] = [str(REPO / "functions")]
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("PGFLEET_HOME", tempfile.mkdtemp(prefix="pgfleet-postman-"))
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    from pgfleet import __version__
    from pgfleet.handlers import api

    return json.loads(  # type: ignore[no-any-return]
        api.app.get_openapi_json_schema(
            title="pgfleet", version=__version__, security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
            security=[{"bearer": []}],
        )
    )  # fmt: skip


def convert(openapi: dict[str, Any]) -> dict[str, Any]:
    if not (NODE_MODULES / "openapi-to-postmanv2").is_dir():
        raise SystemExit(f"openapi-to-postmanv2 is not installed under {NODE_MODULES}: run `make install`")
    proc = subprocess.run(
        ["node", str(HERE / "convert.js"), json.dumps(CONVERTER_OPTIONS)],
        input=json.dumps(openapi), capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"convert.js failed: {proc.stderr}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def collection(openapi: dict[str, Any]) -> dict[str, Any]:
    converted = _strip(convert(openapi))
    converted["item"] = _ordered(converted["item"])
    names: list[str] = []
    for item in _requests(converted["item"]):
        _bind(openapi, item, names)
    fixtures = sorted(
        {
            *FIXTURES.values(),
            "clusterId",
            "clusterBackupId",
            "doomedInstanceId",
            "doomedClusterId",
            "securityIncidentId",
        }
    )
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/pgfleet/pgfleet/postman")),
            "name": "pgfleet",
            "description": (
                "The pgfleet API, generated from its OpenAPI document by tests/postman/generate.py "
                "(`make postman`); do not edit by hand. Run it with local.postman_environment.json: "
                "baseUrl, token (a platform admin: `pgfleet token --role admin --plan system`) and "
                "operatorToken (`pgfleet token --role operator --tenant acme --plan system`)."
            ),
            "schema": SCHEMA,
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}]},
        "variable": [{"key": "baseUrl", "value": DEFAULT_BASE_URL, "type": "string"}]
        + [{"key": name, "value": "", "type": "string"} for name in fixtures],
        "item": [
            lifecycle(),
            setup(),
            _folder(
                GENERATED,
                "Every operation of the OpenAPI document, on the resources of Setup.",
                converted["item"],
            ),  # fmt: skip
            teardown(),
        ],
    }


def environment() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/pgfleet/pgfleet/postman/local")),
        "name": "pgfleet local stack",
        "values": [
            {"key": "baseUrl", "value": DEFAULT_BASE_URL, "type": "default", "enabled": True},
            {"key": "token", "value": "", "type": "secret", "enabled": True},
            {"key": "operatorToken", "value": "", "type": "secret", "enabled": True},
        ],
        "_postman_variable_scope": "environment",
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files; write nothing"
    )
    args = parser.parse_args()
    wanted = {COLLECTION: render(collection(openapi_document())), ENVIRONMENT: render(environment())}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            old = path.read_text().splitlines() if path.exists() else []
            diff = difflib.unified_diff(
                old, wanted[path].splitlines(), str(path), "generated", lineterm="", n=1
            )
            print("\n".join(list(diff)[:60]))
            print(f"{path.relative_to(REPO)} is not up to date with the OpenAPI document: run `make postman`")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
