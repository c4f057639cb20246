"""Resize: new CPU, memory or storage for an instance or a cluster.

PostgreSQL settings follow memory and CPU (the engine derives them), and the engine enforces
memory and CPU with cgroups where the host allows it (the status reason says when only the
settings limit the server). Storage is the limit of the data directory, enforced like a quota
(the quotas domain); it cannot shrink below what is in use.

A single instance restarts once (settings such as shared_buffers need a restart). A cluster
changes as a rolling restart: every replica first, then a switchover to one of them, then the
old primary, so writes pause only for the switchover.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core import admission, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState
from pgfleet.domains import servers, tenants
from pgfleet.domains.servers import MB
from pgfleet.domains.sizing.models import ResizeRequest

SIZES = ("cpu", "memory", "storage")


def describe(sizes: dict[str, Any]) -> str:
    return f"{sizes['cpu']} CPU, {sizes['memory']} MB memory, {sizes['storage']} GB storage"


def resize(
    ports: Ports, principal: Principal, kind: str, resource_id: str, body: ResizeRequest
) -> dict[str, Any]:
    """Check the request against what is in use and hand the resize to the worker (202)."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    resources.require_status(server.record, server.rtype, "resize", ("running",))
    tenants.require_no_tenant_operation(ports, server.id)
    current = {k: server.record[k] for k in SIZES}
    wanted = {**current, **{k: v for k, v in body.model_dump().items() if v is not None}}
    if wanted["storage"] < current["storage"]:
        in_use_mb = servers.admin(ports, server).server_usage().data_directory_bytes / MB
        if in_use_mb > wanted["storage"] * 1024:
            raise InvalidState(
                f"cannot shrink storage to {wanted['storage']} GB: {in_use_mb:.0f} MB are in use",
                details={
                    "storage_in_use_mb": round(in_use_mb, 1),
                    "requested_storage_mb": wanted["storage"] * 1024,
                },
            )
    # What the resize adds, on every node of a cluster; shrinking is never refused here.
    grows = admission.held_by(server.kind, {**server.record, **wanted}) - admission.held_by(
        server.kind, server.record
    )
    admission.admit(
        ports,
        server.record["tenant_id"],
        grows,
        f"resizing {server.kind} {server.record['name']} to {describe(wanted)}",
    )
    return resources.begin(
        ports, principal, server.rtype, server.record, action=f"resize to {describe(wanted)}",
        transitional="resizing", workflow=f"{kind}.resize", params={"previous": current}, changes=wanted,
    )  # fmt: skip
