"""boto3 clients, made once per process and per service.

boto3 is imported here and only here, lazily, so that importing a handler stays fast; the
first request pays for it once.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any

from pgfleet.core import request_context
from pgfleet.core.settings import get_settings

_creating = threading.Lock()


def client(service: str) -> Any:
    """The process's client for `service`. Creating botocore clients from several threads at
    once is not safe (its loaders and credential resolution race), so creation is serialized;
    the clients themselves are thread-safe."""
    with _creating:
        return _client(service)


@functools.cache
def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    settings = get_settings()
    if settings.aws_endpoint_url and "AWS_ACCESS_KEY_ID" not in os.environ:
        # moto (and LocalStack) accept any credentials; boto3 refuses to sign without some.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    config = Config(
        region_name=settings.region,
        max_pool_connections=64,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=30,
        # S3 by path (http://host/bucket/key): a loopback endpoint has no bucket subdomains.
        s3={"addressing_style": "path"},
    )
    made = boto3.session.Session().client(service, endpoint_url=settings.aws_endpoint_url, config=config)
    if service == "dynamodb":  # the metadata store's calls count as the request's database work
        made.meta.events.register("before-call.dynamodb", _call_started)
        made.meta.events.register("after-call.dynamodb", _call_ended)
    return made


_calls = threading.local()


def _call_started(**_: Any) -> None:
    _calls.started = time.perf_counter()


def _call_ended(**_: Any) -> None:
    started = getattr(_calls, "started", None)
    if started is not None:
        _calls.started = None
        request_context.count_database(time.perf_counter() - started)


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or "" for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
