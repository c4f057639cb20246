"""Creates the AWS resources the control plane needs, idempotently.

One function, used by `pgfleet up` against moto and by `localstack/init` against LocalStack,
so both create the same table, queues and schedule group (SAM and Terraform create the same
set in AWS).
"""

from __future__ import annotations

import json
from typing import Any

from pgfleet.adapters.aws import client, error_code
from pgfleet.adapters.dynamodb import TABLE_KEY_SCHEMA
from pgfleet.adapters.history import HISTORY_TABLE_SCHEMA, TTL_ATTRIBUTE
from pgfleet.adapters.rate_limits import RATE_LIMIT_TABLE_SCHEMA
from pgfleet.adapters.rate_limits import TTL_ATTRIBUTE as RATE_TTL_ATTRIBUTE
from pgfleet.core.settings import Settings

QUEUE_VISIBILITY_TIMEOUT = 120
MAX_RECEIVES = 5


def ensure_resources(settings: Settings) -> list[str]:
    """Create what is missing; return a line per resource saying what was done."""
    done = [_ensure_table(settings.table_name), *_ensure_queues(settings.queue_name)]
    done.append(_ensure_table(settings.history_table_name, HISTORY_TABLE_SCHEMA))
    done.append(_ensure_ttl(settings.history_table_name, TTL_ATTRIBUTE))
    done.append(_ensure_table(settings.rate_limit_table_name, RATE_LIMIT_TABLE_SCHEMA))
    done.append(_ensure_ttl(settings.rate_limit_table_name, RATE_TTL_ATTRIBUTE))
    done.append(_ensure_schedule_group(settings.schedule_group))
    done.append(_ensure_bucket(settings.reports_bucket))
    return done


def _ensure_table(name: str, schema: dict[str, Any] = TABLE_KEY_SCHEMA) -> str:
    ddb = client("dynamodb")
    try:
        ddb.create_table(TableName=name, **schema)
    except Exception as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        return f"table {name}: exists"
    ddb.get_waiter("table_exists").wait(TableName=name)
    return f"table {name}: created"


def _ensure_ttl(table: str, attribute: str) -> str:
    """Turn on DynamoDB TTL on `attribute` (moto keeps the setting but never deletes: the
    history expiry schedule sweeps)."""
    ddb = client("dynamodb")
    current = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if (
        current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        and current.get("AttributeName") == attribute
    ):
        return f"table {table}: TTL on {attribute}"
    ddb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
    )
    return f"table {table}: TTL on {attribute} enabled"


def _ensure_queues(name: str) -> list[str]:
    sqs = client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(QUEUE_VISIBILITY_TIMEOUT),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
            ),
        },
    )
    return [f"queue {name}-dlq: ensured", f"queue {name}: ensured"]


def _ensure_schedule_group(name: str) -> str:
    try:
        client("scheduler").create_schedule_group(Name=name)
    except Exception as exc:
        if error_code(exc) != "ConflictException":
            raise
        return f"schedule group {name}: exists"
    return f"schedule group {name}: created"


def _ensure_bucket(name: str) -> str:
    """The reports bucket (compliance reports and evidence), private, encrypted at rest."""
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=name)
    except Exception as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return f"bucket {name}: exists"
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return f"bucket {name}: created"
