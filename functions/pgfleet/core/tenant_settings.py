"""A tenant's own pgfleet settings (sections PERFORMANCE, MAINTENANCE, MONITORING and BACKUP of
`PUT /api/v1/system/configuration`): one metadata record per tenant and section, holding only
what the tenant changed (snake_case names), so a default is never copied and stays today's.

The system domain validates, stores and audits them; the domains that use a value read it
here at the moment they use it (a capture, an analysis, a purge, the next backup), which is
why a change takes effect at once. It lives in core because those domains sit below the
system domain (system imports instances, which import archive): none of them may import it.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists
from pgfleet.core.models import utcnow_iso

KIND = "tenant_settings"
SECTIONS = ("performance", "maintenance", "monitoring", "backup")


def record_id(tenant: str, section: str) -> str:
    return f"{tenant}#{section}"


def overrides(ports: Ports, tenant: str | None, section: str) -> dict[str, Any]:
    """What `tenant` changed in `section` (empty for none, or without a tenant: the defaults)."""
    if not tenant or tenant == "*":
        return {}
    record = ports.store.get(KIND, record_id(tenant, section))
    return dict((record or {}).get("values") or {})


def value(ports: Ports, tenant: str | None, section: str, name: str, default: Any) -> Any:
    """One setting as it applies to `tenant`: its override, else `default`."""
    return overrides(ports, tenant, section).get(name, default)


def save(ports: Ports, tenant: str, section: str, values: dict[str, Any]) -> None:
    """Replace the tenant's overrides of `section` (None values are not kept: the default
    applies again). Conditional on the revision read, so two writers never merge blindly."""
    kept = {k: v for k, v in values.items() if v is not None}
    rid = record_id(tenant, section)
    record = ports.store.get(KIND, rid)
    changes = {"values": kept, "updated_at": utcnow_iso()}
    if record is None:
        try:
            ports.store.create(KIND, {"id": rid, "tenant_id": tenant, "section": section, **changes})
            return
        except AlreadyExists:
            record = ports.store.get(KIND, rid)
    ports.store.update(KIND, rid, changes, record["revision"] if record else None)
