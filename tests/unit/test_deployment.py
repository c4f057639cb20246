"""The deployments (SAM `template.yaml`, Terraform `infra/`) declare the same resources, with
the settings the code relies on: the table's keys, the queue's redrive, the reconcile event,
the environment settings.py reads, the public paths."""

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
from pgfleet.adapters.scheduler import scheduled_event_input
from pgfleet.domains.reconcile.service import RECONCILE_SCHEDULE
from tests.helpers import REPO

TEMPLATE = REPO / "template.yaml"
INFRA = REPO / "infra"

# CloudFormation types (after the SAM transform) and the Terraform types that create them.
CFN_TO_TERRAFORM = {
    "AWS::ApiGatewayV2::Api": "aws_apigatewayv2_api",
    "AWS::ApiGatewayV2::Stage": "aws_apigatewayv2_stage",
    "AWS::DynamoDB::Table": "aws_dynamodb_table",
    "AWS::IAM::Role": "aws_iam_role",
    "AWS::Lambda::EventSourceMapping": "aws_lambda_event_source_mapping",
    "AWS::Lambda::Function": "aws_lambda_function",
    "AWS::Lambda::Permission": "aws_lambda_permission",
    "AWS::Logs::LogGroup": "aws_cloudwatch_log_group",
    "AWS::SQS::Queue": "aws_sqs_queue",
    "AWS::Scheduler::Schedule": "aws_scheduler_schedule",
    "AWS::Scheduler::ScheduleGroup": "aws_scheduler_schedule_group",
}
# Terraform resources that CloudFormation keeps inside another resource: routes, integration
# and authorizer in the HTTP API's OpenAPI body, policies inline in their role.
PARTS_OF = {
    "aws_apigatewayv2_route": "aws_apigatewayv2_api",
    "aws_apigatewayv2_integration": "aws_apigatewayv2_api",
    "aws_apigatewayv2_authorizer": "aws_apigatewayv2_api",
    "aws_iam_role_policy": "aws_iam_role",
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
    assert declared - set(PARTS_OF) == from_template
    assert {PARTS_OF[t] for t in declared & set(PARTS_OF)} <= from_template


def test_table_has_the_key_schema_of_the_code(template: dict[str, Any], infra: str) -> None:
    table = _one(template, "AWS::DynamoDB::Table")
    assert {k: table[k] for k in TABLE_KEY_SCHEMA} == TABLE_KEY_SCHEMA
    body = _hcl_block(infra, 'resource "aws_dynamodb_table" "metadata"')
    attributes = re.search(r"for_each = \[(.*?)\]", body)
    assert attributes
    assert re.findall(r'"(\w+)"', attributes.group(1)) == [
        a["AttributeName"] for a in TABLE_KEY_SCHEMA["AttributeDefinitions"]
    ]
    keys = [(k["AttributeName"], k["KeyType"]) for k in TABLE_KEY_SCHEMA["KeySchema"]]
    assert keys == [(_hcl_string(body, "hash_key"), "HASH"), (_hcl_string(body, "range_key"), "RANGE")]
    indexes = re.findall(r"global_secondary_index \{([^}]*)\}", body)
    assert [
        (_hcl_string(g, "name"), _hcl_string(g, "hash_key"), _hcl_string(g, "range_key")) for g in indexes
    ] == [
        (i["IndexName"], i["KeySchema"][0]["AttributeName"], i["KeySchema"][1]["AttributeName"])
        for i in TABLE_KEY_SCHEMA["GlobalSecondaryIndexes"]
    ]
    assert _hcl_string(body, "billing_mode") == TABLE_KEY_SCHEMA["BillingMode"]


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


def test_reconcile_schedule_sends_the_event_the_code_sends(template: dict[str, Any], infra: str) -> None:
    expected = scheduled_event_input(RECONCILE_SCHEDULE.name, RECONCILE_SCHEDULE.payload)
    schedule = _one(template, "AWS::Scheduler::Schedule")
    assert schedule["Name"] == RECONCILE_SCHEDULE.name
    assert schedule["ScheduleExpression"] == RECONCILE_SCHEDULE.expression
    assert schedule["Target"]["Input"] == expected
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["ScheduledFunction", "Arn"]}
    assert _hcl_string(infra, "reconcile_input") == expected
    reconcile = _hcl_block(infra, 'resource "aws_scheduler_schedule" "reconcile"')
    assert _hcl_string(reconcile, "schedule_expression") == RECONCILE_SCHEDULE.expression
    assert _hcl_string(reconcile, "name") == RECONCILE_SCHEDULE.name


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
    assert handlers == {f"pgfleet.handlers.{n}.lambda_handler" for n in ("api", "worker", "scheduled")}
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
