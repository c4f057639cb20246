"""A Lambda context object for handlers invoked by the local stack."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pgfleet.core.settings import get_settings


@dataclass
class LocalLambdaContext:
    function_name: str
    timeout_seconds: int = 900
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        region = get_settings().region
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{self.function_name}"
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
