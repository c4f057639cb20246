"""The deployments (SAM `template.yaml`, Terraform `infra/`) declare the same resources, with
the settings the code relies on: the tables' keys and TTL, the queue's redrive, the platform
schedules of the domain manifests, the environment settings.py reads, the public paths."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from pgfleet.adapters.bootstrap import MAX_RECEIVES, QUEUE_VISIBILITY_TIMEOUT
from pgfleet.adapters.dynamodb import TABLE_KEY_SCHEMA
from pgfleet.adapters.history import HISTORY_TABLE_SCHEMA, TTL_ATTRIBUTE
from pgfleet.adapters.rate_limits import RATE_LIMIT_TABLE_SCHEMA
from pgfleet.adapters.rate_limits import TTL_ATTRIBUTE as RATE_TTL_ATTRIBUTE
from pgfleet.adapters.scheduler import scheduled_event_input
from pgfleet.handlers.domains import platform_schedules
from tests.helpers import REPO

TEMPLATE = REPO / "template.yaml"
INFRA = REPO / "infra"

# CloudFormation types (after the SAM transform) and the Terraform types that create them.
CFN_TO_TERRAFORM = {
    "AWS::ApiGatewayV2::Api": "aws_apigatewayv2_api",
    "AWS::ApiGatewayV2::Integration": "aws_apigatewayv2_integration",
    "AWS::ApiGatewayV2::Route": "aws_apigatewayv2_route",
    "AWS::ApiGatewayV2::RouteResponse": "aws_apigatewayv2_route_response",
    "AWS::ApiGatewayV2::Stage": "aws_apigatewayv2_stage",
    "AWS::DynamoDB::Table": "aws_dynamodb_table",
    "AWS::IAM::Role": "aws_iam_role",
    "AWS::Lambda::EventSourceMapping": "aws_lambda_event_source_mapping",
    "AWS::Lambda::Function": "aws_lambda_function",
    "AWS::Lambda::Permission": "aws_lambda_permission",
    "AWS::Logs::LogGroup": "aws_cloudwatch_log_group",
    "AWS::S3::Bucket": "aws_s3_bucket",
    "AWS::SQS::Queue": "aws_sqs_queue",
    "AWS::Scheduler::Schedule": "aws_scheduler_schedule",
    "AWS::Scheduler::ScheduleGroup": "aws_scheduler_schedule_group",
}
# Terraform resources that CloudFormation keeps inside another resource: routes, integration
# and authorizer in the HTTP API's OpenAPI body, policies inline in their role. (The WebSocket
# API's routes and integration are resources of their own in both.)
PARTS_OF = {
    "aws_apigatewayv2_route": "aws_apigatewayv2_api",
    "aws_apigatewayv2_integration": "aws_apigatewayv2_api",
    "aws_apigatewayv2_authorizer": "aws_apigatewayv2_api",
    "aws_iam_role_policy": "aws_iam_role",
    "aws_s3_bucket_server_side_encryption_configuration": "aws_s3_bucket",
    "aws_s3_bucket_public_access_block": "aws_s3_bucket",
}
# Settings only the local stack uses (its ports among them); Lambda sets AWS_REGION itself.
LOCAL_ONLY_SETTINGS = {"PGFLEET_AWS_ACCOUNT", "AWS_ENDPOINT_URL"}
LAMBDA_PROVIDED = {"AWS_REGION", "AWS_DEFAULT_REGION"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    parsed, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return dict(parsed)


@pytest.fixture(scope="module")
def expanded(template: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation deploys it."""
    from cfnlint.decode import decode_str
    from cfnlint.template.transforms._sam import Transform

    region = os.environ.get("AWS_DEFAULT_REGION")
    parsed, _ = decode_str(TEMPLATE.read_text())
    transform = Transform(str(TEMPLATE), parsed, "us-east-1")
    try:
        assert transform.transform_template() == []
    finally:  # the transform sets AWS_DEFAULT_REGION for the SAM translator
        if region is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = region
    return dict(transform.template())


@pytest.fixture(scope="module")
def infra() -> str:
    return "\n".join(p.read_text() for p in sorted(INFRA.glob("*.tf")))


def _resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = _resources(template, kind).values()
    return dict(resource["Properties"])


def _hcl_block(text: str, header: str) -> str:
    """The body of the block that starts with `header` (a small parse: braces balance)."""
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    raise AssertionError(f"unbalanced block {header}")


def _hcl_string(text: str, name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    assert match, name
    return str(json.loads(f'"{match.group(1)}"'))


def _hcl_number(text: str, name: str) -> int:
    match = re.search(rf"^\s*{name}\s*=\s*(\d+)", text, re.M)
    assert match, name
    return int(match.group(1))


def test_template_passes_cfn_lint(monkeypatch: pytest.MonkeyPatch) -> None:
    from cfnlint.api import ManualArgs, lint_file

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # restored after the test
    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_infra_declares_the_same_resources_as_the_template(expanded: dict[str, Any], infra: str) -> None:
    declared = set(re.findall(r'^resource\s+"(\w+)"\s+"\w+"', infra, re.M))
    from_template = {CFN_TO_TERRAFORM[r["Type"]] for r in expanded["Resources"].values()}
    assert declared - set(PARTS_OF) == from_template - set(PARTS_OF)
    assert {PARTS_OF[t] for t in declared & set(PARTS_OF)} <= from_template


# CloudFormation logical id, Terraform name, the schema the code creates, its TTL attribute.
TABLES = [
    ("MetadataTable", "metadata", TABLE_KEY_SCHEMA, None),
    ("HistoryTable", "history", HISTORY_TABLE_SCHEMA, TTL_ATTRIBUTE),
    ("RateLimitTable", "rate_limits", RATE_LIMIT_TABLE_SCHEMA, RATE_TTL_ATTRIBUTE),
]


def test_the_tables_are_the_tables_of_the_code(template: dict[str, Any], infra: str) -> None:
    assert set(_resources(template, "AWS::DynamoDB::Table")) == {t[0] for t in TABLES}
    assert set(re.findall(r'^resource\s+"aws_dynamodb_table"\s+"(\w+)"', infra, re.M)) == {
        t[1] for t in TABLES
    }


@pytest.mark.parametrize(("logical_id", "tf_name", "schema", "ttl"), TABLES, ids=[t[1] for t in TABLES])
def test_table_has_the_key_schema_of_the_code(
    template: dict[str, Any],
    infra: str,
    logical_id: str,
    tf_name: str,
    schema: dict[str, Any],
    ttl: str | None,
) -> None:
    table = template["Resources"][logical_id]["Properties"]
    assert {k: table[k] for k in schema} == schema
    body = _hcl_block(infra, f'resource "aws_dynamodb_table" "{tf_name}"')
    attributes = re.search(r"for_each = \[(.*?)\]", body)
    declared = [(name, "S") for name in re.findall(r'"(\w+)"', attributes.group(1))] if attributes else []
    declared += [
        (_hcl_string(a, "name"), _hcl_string(a, "type"))
        for a in re.findall(r"^  attribute \{([^}]*)\}", body, re.M)
    ]
    assert declared == [(a["AttributeName"], a["AttributeType"]) for a in schema["AttributeDefinitions"]]
    keys = [(k["AttributeName"], k["KeyType"]) for k in schema["KeySchema"]]
    expected_keys = [(_hcl_string(body, "hash_key"), "HASH")]
    if len(keys) > 1:
        expected_keys.append((_hcl_string(body, "range_key"), "RANGE"))
    assert keys == expected_keys
    indexes = re.findall(r"global_secondary_index \{([^}]*)\}", body)
    assert [
        (_hcl_string(g, "name"), _hcl_string(g, "hash_key"), _hcl_string(g, "range_key"), _hcl_string(g, "projection_type"))
        for g in indexes
    ] == [
        (i["IndexName"], i["KeySchema"][0]["AttributeName"], i["KeySchema"][1]["AttributeName"], i["Projection"]["ProjectionType"])
        for i in schema.get("GlobalSecondaryIndexes", [])
    ]  # fmt: skip
    assert _hcl_string(body, "billing_mode") == schema["BillingMode"]
    if ttl is None:
        assert "TimeToLiveSpecification" not in table and "ttl {" not in body
    else:
        assert table["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
        ttl_block = _hcl_block(body, "ttl {")
        assert _hcl_string(ttl_block, "attribute_name") == ttl and re.search(r"enabled\s*=\s*true", ttl_block)


def test_queue_redrive_matches_bootstrap(template: dict[str, Any], infra: str) -> None:
    queues = _resources(template, "AWS::SQS::Queue")
    main = queues["OperationsQueue"]["Properties"]
    assert main["VisibilityTimeout"] == QUEUE_VISIBILITY_TIMEOUT
    assert main["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVES
    assert main["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["OperationsDeadLetterQueue", "Arn"]
    }
    assert _hcl_number(infra, "queue_visibility_timeout") == QUEUE_VISIBILITY_TIMEOUT
    assert _hcl_number(infra, "max_receives") == MAX_RECEIVES
    # The worker must finish before its message becomes visible again.
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    assert worker["Timeout"] < QUEUE_VISIBILITY_TIMEOUT
    assert worker["Events"]["Operations"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]


# --- platform schedules: the deployments declare exactly those of the manifests ------------

Declared = dict[str, tuple[str, str]]  # schedule name -> (expression, Input)


def _manifest_schedules() -> Declared:
    schedules = platform_schedules()
    declared = {s.name: (s.expression, scheduled_event_input(s.name, s.payload)) for s in schedules}
    assert len(declared) == len(schedules), "two manifests declare a schedule of the same name"
    assert all(s.enabled for s in schedules)  # both deployments declare them ENABLED
    return declared


def _template_schedules(template: dict[str, Any]) -> Declared:
    declared: Declared = {}
    for logical_id, resource in _resources(template, "AWS::Scheduler::Schedule").items():
        props = resource["Properties"]
        assert props["Name"] not in declared, f"{props['Name']} is declared twice"
        # Every platform schedule fires the scheduled function in the pgfleet group, in UTC.
        assert props["GroupName"] == {"Ref": "ScheduleGroup"}, logical_id
        assert props["Target"]["Arn"] == {"Fn::GetAtt": ["ScheduledFunction", "Arn"]}, logical_id
        assert props["Target"]["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}, logical_id
        assert (props["State"], props["ScheduleExpressionTimezone"]) == ("ENABLED", "UTC"), logical_id
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}, logical_id
        declared[props["Name"]] = (props["ScheduleExpression"], props["Target"]["Input"])
    return declared


_HCL_STR = r'"((?:[^"\\]|\\.)*)"'
_HCL_SCHEDULE = re.compile(
    rf"^\s*{_HCL_STR}\s*=\s*\{{\s*expression\s*=\s*{_HCL_STR}\s*,\s*input\s*=\s*{_HCL_STR}\s*\}}\s*$", re.M
)


def _infra_schedules(infra: str) -> Declared:
    """`local.platform_schedules`, which the single for_each schedule resource declares."""
    (resource,) = re.findall(r'^resource\s+"aws_scheduler_schedule"\s+"(\w+)"', infra, re.M)
    body = _hcl_block(infra, f'resource "aws_scheduler_schedule" "{resource}"')
    assert re.search(r"^\s*for_each\s*=\s*local\.platform_schedules\s*$", body, re.M)
    for attribute, value in (("name", "each.key"), ("schedule_expression", "each.value.expression"),
                             ("input", "each.value.input"), ("state", '"ENABLED"'),
                             ("schedule_expression_timezone", '"UTC"')):  # fmt: skip
        assert re.search(rf"^\s*{attribute}\s*=\s*{re.escape(value)}\s*$", body, re.M), attribute
    entries = _hcl_block(infra, "platform_schedules = {")
    lines = [line for line in entries.splitlines() if line.strip() and not line.strip().startswith("#")]
    found = _HCL_SCHEDULE.findall(entries)
    assert len(found) == len(lines), (
        "an entry of local.platform_schedules is not `name = { expression, input }`"
    )
    unquote: Any = lambda text: json.loads(f'"{text}"')  # noqa: E731  (HCL escapes as JSON does)
    declared: Declared = {}
    for name, expression, input_ in found:
        assert unquote(name) not in declared, f"{name} is declared twice"
        declared[unquote(name)] = (unquote(expression), unquote(input_))
    return declared


def test_the_deployments_declare_the_platform_schedules_of_the_manifests(
    template: dict[str, Any], infra: str
) -> None:
    expected = _manifest_schedules()
    assert {"pgfleet-reconcile", "pgfleet-quotas", "pgfleet-backup-expiry", "pgfleet-history-expiry"} <= set(
        expected
    )
    assert _template_schedules(template) == expected
    assert _infra_schedules(infra) == expected


def test_the_schedule_check_sees_drift(template: dict[str, Any], infra: str) -> None:
    """The comparison above is not vacuous: a missing, changed or extra schedule shows."""
    import copy

    expected = _manifest_schedules()
    name, (expression, input_) = next(iter(expected.items()))
    entry = next(line for line in infra.splitlines() if line.strip().startswith(f'"{name}"'))
    assert _infra_schedules(infra.replace(entry + "\n", "")) != expected  # missing
    assert _infra_schedules(infra.replace(entry, entry.replace(expression, "rate(7 minutes)"))) != expected
    changed = entry.replace(
        json.dumps(input_)[1:-1], json.dumps(input_.replace('"detail": {', '"detail": {"x": 1, '))[1:-1]
    )
    assert changed != entry and _infra_schedules(infra.replace(entry, changed)) != expected  # payload
    assert (
        _infra_schedules(infra.replace(entry, entry + "\n" + entry.replace(name, "pgfleet-extra")))
        != expected
    )

    for change in ("drop", "expression", "input", "extra"):
        edited = copy.deepcopy(template)
        (logical_id,) = [
            k
            for k, r in _resources(edited, "AWS::Scheduler::Schedule").items()
            if r["Properties"]["Name"] == name
        ]
        props = edited["Resources"][logical_id]["Properties"]
        if change == "drop":
            del edited["Resources"][logical_id]
        elif change == "expression":
            props["ScheduleExpression"] = "rate(7 minutes)"
        elif change == "input":
            props["Target"]["Input"] = scheduled_event_input(name, {"task": "other"})
        else:
            extra = copy.deepcopy(edited["Resources"][logical_id])
            extra["Properties"]["Name"] = "pgfleet-extra"
            edited["Resources"]["ExtraSchedule"] = extra
        assert _template_schedules(edited) != expected, change


def test_environment_is_what_settings_reads(template: dict[str, Any], infra: str) -> None:
    source = (REPO / "functions" / "pgfleet" / "core" / "settings.py").read_text()
    read = set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', source))
    local = {name for name in read if name.endswith("_PORT")} | LOCAL_ONLY_SETTINGS
    expected = read - local - LAMBDA_PROVIDED
    assert set(template["Globals"]["Function"]["Environment"]["Variables"]) == expected
    environment = _hcl_block(infra, "environment = {")
    assert set(re.findall(r"^\s*([A-Z_]+)\s*=", environment, re.M)) == expected


def test_handlers_exist_and_both_deployments_use_them(template: dict[str, Any], infra: str) -> None:
    handlers = {
        r["Properties"]["Handler"] for r in _resources(template, "AWS::Serverless::Function").values()
    }
    assert handlers == {
        f"pgfleet.handlers.{n}.lambda_handler" for n in ("api", "worker", "scheduled", "events")
    }
    assert set(re.findall(r'handler = "([\w.]+)"', infra)) == handlers
    for handler in handlers:
        module, function = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function))


def test_only_public_paths_skip_the_jwt_authorizer(template: dict[str, Any], infra: str) -> None:
    from pgfleet.handlers.api import public_paths

    PUBLIC_PATHS = public_paths()
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    public = {
        e["Properties"]["Path"] for e in events if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert public == PUBLIC_PATHS
    routes = re.search(r"public_routes\s*=\s*\[(.*?)\]", infra)
    assert routes and {r.split(" ", 1)[1] for r in re.findall(r'"([^"]+)"', routes.group(1))} == PUBLIC_PATHS
    assert template["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for role in _resources(template, "AWS::IAM::Role").values()
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_iam_grants_named_actions_on_named_resources(template: dict[str, Any], infra: str) -> None:
    for statement in _statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions), statement
        if "NotResource" in statement:
            # The one exclusion grant: SNS Publish straight to phone numbers (SMS channels) has no
            # resource ARN to name; excluding every SNS ARN leaves phone numbers only.
            assert actions == ["sns:Publish"] and "Resource" not in statement, statement
            assert ":sns:*:*:*" in str(statement["NotResource"]), statement
            continue
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert "*" not in resources, statement
    assert not re.search(r'Action\s*=\s*"[^"]*\*', infra) and not re.search(r'Resource\s*=\s*"\*"', infra)


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")
def test_infra_is_formatted() -> None:
    proc = subprocess.run(
        [str(shutil.which("terraform")), "fmt", "-check", "-diff", "-recursive", str(INFRA)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"},  # this machine points it at a missing file
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the IAM policies grant what the code calls -----------------------------------------------

# Modules that never run in Lambda: the local stack, the local engines, the Terraform provider,
# and the bootstrap that creates on moto or LocalStack what the template creates in AWS.
NOT_IN_LAMBDA = (
    "local/",
    "adapters/engines/local/",
    "provider/",
    "adapters/bootstrap.py",
    "localstack_init.py",
)
# IAM actions that are not the operation's own name.
IAM_ACTION = {
    ("apigatewaymanagementapi", "PostToConnection"): "execute-api:ManageConnections",
    ("apigatewaymanagementapi", "DeleteConnection"): "execute-api:ManageConnections",
}
# TransactWriteItems is authorized item by item, by the action of each kind of item it writes.
TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _called_actions() -> dict[str, set[str]]:
    """IAM action -> the modules whose boto3 clients call it: every `client("<service>")` (or
    resource) of a module, and the method calls, paginators and waiters of the module that are
    operations of that service (botocore's service model)."""
    import ast

    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    package = REPO / "functions" / "pgfleet"
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith(NOT_IN_LAMBDA):
            continue
        tree = ast.parse(path.read_text())
        services, calls, items = set(), set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                first = node.args[0] if node.args else None
                literal = (
                    first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
                )
                if name in ("client", "resource") and literal:
                    services.add(literal)
                if isinstance(func, ast.Attribute):
                    calls.add(func.attr)
                    if func.attr in ("get_paginator", "get_waiter") and literal:
                        calls.add(literal)
            if isinstance(node, ast.Dict):
                items |= {
                    k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in TRANSACT_ITEMS
                }
        for service in services:
            model = session.get_service_model(service)
            operations = {xform_name(o): o for o in model.operation_names}
            prefix = model.signing_name
            for call in calls & set(operations):
                operation = operations[call]
                if operation == "TransactWriteItems":
                    actions = {f"{prefix}:{TRANSACT_ITEMS[i]}" for i in items}
                else:
                    actions = {IAM_ACTION.get((service, operation), f"{prefix}:{operation}")}
                for action in actions:
                    found.setdefault(action, set()).add(rel)
    return found


def test_the_iam_policies_grant_every_aws_call_the_code_makes(template: dict[str, Any], infra: str) -> None:
    called = _called_actions()
    assert {"dynamodb:PutItem", "sqs:SendMessage", "scheduler:CreateSchedule", "secretsmanager:GetSecretValue",
            "sns:Publish", "execute-api:ManageConnections", "s3:PutObject"} <= set(called)  # fmt: skip
    granted_sam = {
        a
        for s in _statements(template)
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    granted_tf = set(re.findall(r'"([a-z0-9-]+:[A-Za-z]+)"', infra))
    missing_sam = {a: sorted(m) for a, m in called.items() if a not in granted_sam}
    missing_tf = {a: sorted(m) for a, m in called.items() if a not in granted_tf}
    assert not missing_sam, f"template.yaml grants none of: {missing_sam}"
    assert not missing_tf, f"infra/ grants none of: {missing_tf}"
    # Creating or changing a schedule hands it the scheduler's role: iam:PassRole on that role.
    assert "iam:PassRole" in granted_sam and "iam:PassRole" in granted_tf
