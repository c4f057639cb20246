"""The worker Lambda: SQS-triggered, runs Operations step by step, and the other messages the
domains declare (`{"type": ...}`: notification deliveries).

Reports partial batch failures so that only the failed messages come back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgfleet.core import operations
from pgfleet.core.context import provide
from pgfleet.handlers import domains
from pgfleet.wiring import cold_start, dependencies

log = logging.getLogger("pgfleet.worker")

provide(dependencies)
cold_start()
domains.install()
HANDLERS = domains.message_handlers()


def handle(message: dict[str, Any]) -> str:
    if "operation_id" in message:
        return operations.run(dependencies(), message["operation_id"])
    kind = message.get("type")
    if kind not in HANDLERS:
        return f"message of unknown type {kind!r} dropped"
    return HANDLERS[kind](dependencies(), message)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        try:
            message = json.loads(record["body"])
            log.info(handle(message))
        except Exception:
            log.exception("message %s failed", record.get("messageId"))
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}
