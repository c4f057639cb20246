"""The worker Lambda: SQS-triggered, runs Operations step by step.

Reports partial batch failures so that only the failed messages come back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgfleet.services import backup_verification as _backup_verification  # noqa: F401  (backups)
from pgfleet.services import backups as _backups  # noqa: F401
from pgfleet.services import clusters as _clusters  # noqa: F401  (registers workflows)
from pgfleet.services import instances as _instances  # noqa: F401
from pgfleet.services import operations
from pgfleet.services import replicas as _replicas  # noqa: F401
from pgfleet.services import restore_workflows as _restore_workflows  # noqa: F401
from pgfleet.services import sizing as _sizing  # noqa: F401  (resize)
from pgfleet.services import tenants as _tenants  # noqa: F401  (tenant deletion)
from pgfleet.wiring import dependencies

log = logging.getLogger("pgfleet.worker")


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
