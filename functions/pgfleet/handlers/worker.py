"""The worker Lambda: SQS-triggered, runs Operations step by step.

Reports partial batch failures so that only the failed messages come back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgfleet.core import operations
from pgfleet.core.context import provide
from pgfleet.handlers import domains
from pgfleet.wiring import dependencies

log = logging.getLogger("pgfleet.worker")

provide(dependencies)
domains.install()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        try:
            message = json.loads(record["body"])
            outcome = operations.run(dependencies(), message["operation_id"])
            log.info(outcome)
        except Exception:
            log.exception("operation message %s failed", record.get("messageId"))
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}
