"""The local AWS endpoint keeps DynamoDB, Secrets Manager, Scheduler, SQS queues and S3 objects across `kill -9`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pgfleet.local.aws import JOURNAL_NAME, journaled_action, request_service

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
TABLE = "pgfleet-test"
LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:pgfleet-scheduled"
ROLE_ARN = "arn:aws:iam::123456789012:role/pgfleet-scheduler"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AwsServer:
    """One `python -m pgfleet.local.aws` subprocess on a fixed state dir and port."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.stderr_path = state_dir.parent / "aws.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: dict[str, Any] = {}

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(FUNCTIONS_DIR)}
        command = [sys.executable, "-m", "pgfleet.local.aws", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [*command, "--state-dir", str(self.state_dir)], env=env, stderr=stderr
            )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        # The server replays before it binds, so accepting a connection means ready.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.stderr_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"local AWS endpoint did not listen on {self.port}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self, service: str) -> Any:
        # Cached: making a boto3 client costs more than most calls against moto.
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(retries={"max_attempts": 1}),
            )
        return self._clients[service]

    def journal_bytes(self) -> bytes:
        path = self.state_dir / JOURNAL_NAME
        return path.read_bytes() if path.exists() else b""


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[AwsServer]:
    server = AwsServer(tmp_path / "state", _free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill9()


def _restart(aws: AwsServer) -> None:
    aws.kill9()
    aws.start()


# --- workload --------------------------------------------------------------------------------


def _create_table(ddb: Any) -> None:
    attrs = [("pk", "S"), ("sk", "S"), ("gsi1pk", "S"), ("gsi1sk", "S")]
    ddb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in attrs],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _item(pk: str, sk: str, **extra: str) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"S": sk}, "gsi1pk": {"S": "tenant#t1"}, "gsi1sk": {"S": pk}}
    item.update({k: {"S": v} for k, v in extra.items()})
    return item


def _dynamodb_writes(ddb: Any) -> None:
    _create_table(ddb)
    for name in ("a", "b", "c"):
        ddb.put_item(TableName=TABLE, Item=_item(f"inst#{name}", "meta", state="creating"))
    ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "inst#a"}, "sk": {"S": "meta"}},
        UpdateExpression="SET #s = :s ADD version :one",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "running"}, ":one": {"N": "1"}},
    )
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "inst#b"}, "sk": {"S": "meta"}})
    # Rejected by moto, so never journaled: it must not overwrite "a" on replay either.
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        ddb.put_item(
            TableName=TABLE,
            Item=_item("inst#a", "meta", state="clobbered"),
            ConditionExpression="attribute_not_exists(pk)",
        )
    ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": _item("inst#d", "meta")}}]})


def _schedule_writes(scheduler: Any) -> None:
    scheduler.create_schedule_group(Name="pgfleet")
    scheduler.create_schedule(
        Name="reconcile",
        GroupName="pgfleet",
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": LAMBDA_ARN, "RoleArn": ROLE_ARN, "Input": '{"job": "reconcile"}'},
    )


def _write_everything(aws: AwsServer) -> dict[str, str]:
    _dynamodb_writes(aws.client("dynamodb"))
    secrets = aws.client("secretsmanager")
    arn = secrets.create_secret(Name="pgfleet/inst-a/admin", SecretString="first")["ARN"]
    secrets.put_secret_value(SecretId=arn, SecretString="second")
    _schedule_writes(aws.client("scheduler"))
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="pgfleet-ops", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    return {"secret_arn": arn, "queue_url": queue_url}


# --- tests -----------------------------------------------------------------------------------


def test_state_survives_kill_9(aws: AwsServer) -> None:
    written = _write_everything(aws)

    _restart(aws)

    ddb = aws.client("dynamodb")
    get: Callable[[str], Any] = lambda pk: ddb.get_item(  # noqa: E731
        TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "meta"}}
    ).get("Item")
    assert get("inst#a")["state"] == {"S": "running"}
    assert get("inst#a")["version"] == {"N": "1"}
    assert get("inst#b") is None
    assert get("inst#c")["state"] == {"S": "creating"}
    assert get("inst#d") is not None
    by_tenant = ddb.query(
        TableName=TABLE,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :t",
        ExpressionAttributeValues={":t": {"S": "tenant#t1"}},
    )
    assert [i["pk"]["S"] for i in by_tenant["Items"]] == ["inst#a", "inst#c", "inst#d"]

    secrets = aws.client("secretsmanager")
    # Same ARN (moto's random suffix is replayed from the journal's seed), newest value.
    assert secrets.get_secret_value(SecretId=written["secret_arn"])["SecretString"] == "second"

    scheduler = aws.client("scheduler")
    schedule = scheduler.get_schedule(Name="reconcile", GroupName="pgfleet")
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Target"]["Input"] == '{"job": "reconcile"}'
    assert [s["Name"] for s in scheduler.list_schedules(GroupName="pgfleet")["Schedules"]] == ["reconcile"]

    sqs = aws.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=written["queue_url"], AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "45"

    log_text = aws.stderr_path.read_text()
    assert "(0 skipped)" in log_text  # the rejected conditional put was never journaled
    assert "first" not in log_text and "second" not in log_text  # secret values never logged


def test_deletes_survive_kill_9(aws: AwsServer) -> None:
    scheduler = aws.client("scheduler")
    _schedule_writes(scheduler)
    scheduler.delete_schedule(Name="reconcile", GroupName="pgfleet")
    secrets = aws.client("secretsmanager")
    secrets.create_secret(Name="gone", SecretString="x")
    secrets.delete_secret(SecretId="gone", ForceDeleteWithoutRecovery=True)
    sqs = aws.client("sqs")
    sqs.delete_queue(QueueUrl=sqs.create_queue(QueueName="gone")["QueueUrl"])

    _restart(aws)

    assert aws.client("scheduler").list_schedules(GroupName="pgfleet")["Schedules"] == []
    assert aws.client("secretsmanager").list_secrets()["SecretList"] == []
    assert "QueueUrls" not in aws.client("sqs").list_queues()


def test_s3_objects_survive_kill_9(aws: AwsServer) -> None:
    """Compliance reports and evidence live in S3: a restart keeps them and their bytes."""
    s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    s3.create_bucket(Bucket="pgfleet-reports")
    body = bytes(range(256)) * 64
    s3.put_object(
        Bucket="pgfleet-reports", Key="compliance/reports/r.pdf", Body=body, ContentType="application/pdf"
    )
    s3.put_object(Bucket="pgfleet-reports", Key="gone", Body=b"x")
    s3.delete_object(Bucket="pgfleet-reports", Key="gone")
    before = aws.journal_bytes()
    assert s3.get_object(Bucket="pgfleet-reports", Key="compliance/reports/r.pdf")["Body"].read() == body
    assert aws.journal_bytes() == before  # a read journals nothing

    _restart(aws)

    s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    got = s3.get_object(Bucket="pgfleet-reports", Key="compliance/reports/r.pdf")
    assert got["Body"].read() == body and got["ContentType"] == "application/pdf"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="pgfleet-reports")["Contents"]] == [
        "compliance/reports/r.pdf"
    ]


def test_read_only_workload_journals_nothing(aws: AwsServer) -> None:
    written = _write_everything(aws)
    before = aws.journal_bytes()

    ddb = aws.client("dynamodb")
    ddb.get_item(TableName=TABLE, Key={"pk": {"S": "inst#a"}, "sk": {"S": "meta"}})
    ddb.query(TableName=TABLE, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "x"}})
    ddb.scan(TableName=TABLE)
    ddb.describe_table(TableName=TABLE)
    ddb.list_tables()
    ddb.execute_statement(Statement='SELECT * FROM "pgfleet-test"')
    secrets = aws.client("secretsmanager")
    secrets.get_secret_value(SecretId=written["secret_arn"])
    secrets.describe_secret(SecretId=written["secret_arn"])
    secrets.list_secrets()
    scheduler = aws.client("scheduler")
    scheduler.list_schedules()
    scheduler.get_schedule(Name="reconcile", GroupName="pgfleet")
    scheduler.list_schedule_groups()
    sqs = aws.client("sqs")
    sqs.list_queues()
    sqs.get_queue_attributes(QueueUrl=written["queue_url"], AttributeNames=["All"])
    # Message traffic is transient by design: not journaled either.
    sqs.send_message(QueueUrl=written["queue_url"], MessageBody="op-1")
    for message in sqs.receive_message(QueueUrl=written["queue_url"], WaitTimeSeconds=0).get("Messages", []):
        sqs.delete_message(QueueUrl=written["queue_url"], ReceiptHandle=message["ReceiptHandle"])

    assert aws.journal_bytes() == before


def test_torn_journal_tail_is_dropped(aws: AwsServer) -> None:
    aws.client("secretsmanager").create_secret(Name="kept", SecretString="v")
    aws.kill9()
    with (aws.state_dir / JOURNAL_NAME).open("ab") as journal:
        journal.write(b'{"v":1,"service":"secretsmanager","act')  # a crash mid-append

    aws.start()
    secrets = aws.client("secretsmanager")
    secrets.create_secret(Name="after", SecretString="w")
    _restart(aws)

    assert aws.client("secretsmanager").get_secret_value(SecretId="kept")["SecretString"] == "v"
    assert aws.client("secretsmanager").get_secret_value(SecretId="after")["SecretString"] == "w"


@pytest.mark.parametrize(
    ("environ", "body", "expected"),
    [
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, b"{}", "PutItem"),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query"}, b"{}", None),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.DescribeTable"}, b"{}", None),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ExecuteStatement"}, b'{"Statement":"select 1"}', None),
        (
            {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ExecuteStatement"},
            b'{"Statement":"UPDATE t SET a=1"}',
            "ExecuteStatement",
        ),
        ({"HTTP_X_AMZ_TARGET": "secretsmanager.PutSecretValue"}, b"{}", "PutSecretValue"),
        ({"HTTP_X_AMZ_TARGET": "secretsmanager.GetSecretValue"}, b"{}", None),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.CreateQueue"}, b"{}", "CreateQueue"),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage"}, b"{}", None),
        (
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request",
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
            },
            b"Action=DeleteQueue&QueueUrl=x",
            "DeleteQueue",
        ),
        (
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/scheduler/aws4_request",
                "REQUEST_METHOD": "PUT",
                "PATH_INFO": "/schedules/reconcile",
            },
            b"{}",
            "PUT /schedules",
        ),
        (
            {
                "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/scheduler/aws4_request",
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/schedules",
            },
            b"",
            None,
        ),
    ],
)
def test_action_classification(environ: dict[str, Any], body: bytes, expected: str | None) -> None:
    service = request_service(environ)
    assert service is not None
    assert journaled_action(service, environ, body) == expected
