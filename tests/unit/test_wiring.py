"""Wiring at cold start: PGFLEET_ENGINE names an engine this build has, or every handler module
fails to load with the reason (Lambda's init error), not each request; the instance and cluster
objects say which engine serves them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def _load(module: str, engine: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGFLEET_ENGINE": engine, "PGFLEET_HOME": str(home), "PYTHONPATH": str(FUNCTIONS)}
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize("module", ["pgfleet.handlers.api", "pgfleet.handlers.worker", "pgfleet.handlers.scheduled",
                                    "pgfleet.handlers.events"])  # fmt: skip
def test_an_engine_this_build_lacks_fails_the_cold_start_with_the_reason(module: str, tmp_path: Path) -> None:
    rds = _load(module, "rds", tmp_path)
    assert (
        rds.returncode != 0
        and "PGFLEET_ENGINE=rds: the Amazon RDS engine is not part of this build" in rds.stderr
    )
    unknown = _load(module, "docker", tmp_path)
    assert (
        unknown.returncode != 0
        and "PGFLEET_ENGINE='docker' is not an engine; engines: local" in unknown.stderr
    )
    assert _load(module, "local", tmp_path).returncode == 0


def test_instances_and_clusters_say_which_engine_serves_them(call: Any, fake_ports: Any) -> None:
    engine = fake_ports.settings.engine  # the deployment's, kept in the record
    status, made = call("POST", "/api/v1/postgres/single", {"name": "eng"}, role="operator")
    assert status == 202 and made["engine"] == engine, made
    status, shown = call("GET", f"/api/v1/postgres/single/{made['id']}", role="operator")
    assert status == 200 and shown["engine"] == engine
    status, made = call(
        "POST", "/api/v1/postgres/cluster", {"name": "eng-ha", "node_count": 1}, role="operator"
    )
    assert status == 202 and made["engine"] == engine, made
