"""The scope parameters of the seed-003 routes (locks, monitoring, performance: its scope
rule): `targetId` (an instance or a cluster), `node` (a member of that cluster; default its
primary) and `tenantId`. One definition, so every router takes them alike."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

TargetId = Annotated[
    str | None,
    Query(
        alias="targetId",
        pattern=r"^pg[ic]-[0-9a-f]{12}$",
        description="An instance (pgi-...) or a cluster (pgc-...).",
    ),
]
TenantId = Annotated[str | None, Query(alias="tenantId", max_length=128)]
Node = Annotated[
    str | None, Query(pattern=r"^n[0-9]{1,2}$", description="A cluster member; default its primary.")
]
