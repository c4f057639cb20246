from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakes import FakePorts


@pytest.fixture
def fake_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePorts]:
    from pgfleet import wiring
    from pgfleet.core import settings

    monkeypatch.setenv("PGFLEET_HOME", str(tmp_path))
    settings.get_settings.cache_clear()
    ports = FakePorts(tmp_path)
    wiring.override(ports)
    from pgfleet.handlers import api

    api._tokens.cache_clear()
    yield ports
    wiring.override(None)
    settings.get_settings.cache_clear()
    api._tokens.cache_clear()


@pytest.fixture
def call(fake_ports: FakePorts):  # type: ignore[no-untyped-def]
    """Invoke the api handler with an HTTP API v2 event built by the local gateway."""
    from pgfleet.core.auth import LocalTokens
    from pgfleet.handlers.api import lambda_handler
    from pgfleet.local.gateway import build_event
    from pgfleet.local.lambda_context import LocalLambdaContext

    tokens = LocalTokens(fake_ports.settings.home)

    # tenant=None with role="admin": a platform token (every tenant).
    def _call(method: str, path: str, body: Any = None, role: str | None = "operator", tenant: str | None = "acme",
              headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if role:
            hdrs["Authorization"] = f"Bearer {tokens.mint(role, tenant)}"
        raw = json.dumps(body).encode() if body is not None else b""
        event = build_event(method, path, hdrs, raw, "127.0.0.1")
        resp = lambda_handler(event, LocalLambdaContext("test"))
        text = resp.get("body") or ""
        try:
            return resp["statusCode"], json.loads(text)
        except ValueError:
            return resp["statusCode"], text

    return _call


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
