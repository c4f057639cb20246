"""`GET /api/v1/system/status`: the platform and the servers in scope, from the same checks
as `/api/health/detailed` (the metadata store, the queue, secrets, the scheduler, the engine,
etcd, each server: a replica down is WARNING), with:
- `overall`: MAINTENANCE while a maintenance execution runs in scope (unless something is
  CRITICAL), else the worst component;
- `version`: the control plane's, with the PostgreSQL versions the engine runs;
- `uptime` / `lastRestart`: of the API process answering (in AWS, its Lambda execution
  environment; locally, `pgfleet up`'s gateway).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pgfleet import __version__
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.domains import maintenance, platform

STARTED = time.time()


def read(ports: Ports, caller: Principal) -> dict[str, Any]:
    health = platform.detailed_health(ports, caller)
    running = maintenance.in_progress(ports, tenant_scope(caller, None))
    overall: str = health.overall
    if running and overall != "CRITICAL":
        overall = "MAINTENANCE"
    components = [
        {
            "component": c.component, "status": c.status, "last_check": c.last_check,
            "version": __version__ if c.component in ("api", "engine") else None,
            "details": {"message": c.message, "latency_ms": c.latency_ms, "target_id": c.target_id,
                        "metrics": [m.model_dump() for m in c.metrics]},
        }
        for c in health.components
    ]  # fmt: skip
    if running:
        components.append({
            "component": "maintenance", "status": "MAINTENANCE", "last_check": health.last_updated, "version": None,
            "details": {"message": "; ".join(running)},
        })  # fmt: skip
    try:
        versions = ports.engine.supported_versions()
    except Exception:  # noqa: BLE001 (a status read never fails for the versions' sake)
        versions = []
    return {
        "overall": overall,
        "components": components,
        "version": {"control_plane": __version__, "api": "v1", "postgres_versions": versions},
        "uptime": round(time.time() - STARTED, 1),
        "last_restart": datetime.fromtimestamp(STARTED, UTC).isoformat().replace("+00:00", "Z"),
    }
