"""The control catalog (data/controls.json, shipped with the package): controls as data.

A control is one check with a pass rule, mapped to requirement ids per framework:
- `sql`: a query of compliance/sql.py run in every server in scope (in every database with
  `per_database`), judged by its rule (`equals`, `not_in`, `list_contains` on the first value;
  `no_rows`, where each row is a finding);
- `fact`: a fact of the platform (backups, the audit trail, tokens, roles) read from the
  metadata store, the backup engine and the settings (compliance/facts.py);
- `attested`: what no automation can judge (a security official named): NOT_APPLICABLE until
  a compliance officer accepts the evidence uploaded to its remediation task, never a pass
  made up.
`scope` is `server` (each server in scope) or `platform` (once per assessment).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pgfleet.core.errors import ValidationFailed
from pgfleet.domains.compliance import sql as q

FRAMEWORKS = ("HIPAA", "GDPR", "SOX", "PCI_DSS", "SOC2")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
KINDS = ("sql", "fact", "attested")
RULES = ("equals", "not_in", "list_contains", "no_rows", "fact", "attested")
FACTS = (
    "backup_encryption",
    "backup_verification",
    "pitr_window",
    "audit_trail",
    "token_lifetime",
    "rbac_roles",
)
PARAMS = ("managed_roles", "tenant_databases")
PLATFORM = "platform"


@dataclass(frozen=True)
class Framework:
    key: str
    name: str
    source: str
    audit_retention_days: int | None
    audit_retention_basis: str


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    severity: str
    kind: str
    rule: dict[str, Any]
    remediation: str
    requirements: dict[str, tuple[str, ...]]
    scope: str = "server"
    query: str | None = None
    per_database: bool = False
    params: str | None = None
    fact: str | None = None

    def requirement_ids(self, framework: str) -> tuple[str, ...]:
        return self.requirements.get(framework, ())

    @property
    def sql_text(self) -> str:
        return q.QUERIES[self.query] if self.query else ""


@dataclass(frozen=True)
class Catalog:
    frameworks: dict[str, Framework]
    controls: tuple[Control, ...]

    def of(self, framework: str) -> list[Control]:
        """The controls that support a requirement of `framework`, in catalog order."""
        return [c for c in self.controls if c.requirement_ids(framework)]

    def control(self, control_id: str) -> Control:
        found = next((c for c in self.controls if c.id == control_id), None)
        if found is None:
            raise KeyError(control_id)
        return found


def _control(raw: dict[str, Any]) -> Control:
    where = f"control {raw.get('id')!r}"
    control = Control(
        id=str(raw["id"]), title=str(raw["title"]), severity=str(raw["severity"]), kind=str(raw["kind"]),
        rule=dict(raw["rule"]), remediation=str(raw["remediation"]),
        requirements={str(k): tuple(str(i) for i in v) for k, v in raw["requirements"].items()},
        scope=str(raw.get("scope", "server")), query=raw.get("query"), per_database=bool(raw.get("per_database")),
        params=raw.get("params"), fact=raw.get("fact"),
    )  # fmt: skip
    problems = []
    if control.severity not in SEVERITIES:
        problems.append(f"severity {control.severity!r}")
    if control.kind not in KINDS or control.rule.get("type") not in RULES:
        problems.append(f"kind {control.kind!r} / rule {control.rule.get('type')!r}")
    if control.kind == "sql" and (control.query not in q.QUERIES or control.scope != "server"):
        problems.append(f"query {control.query!r} (sql controls run per server)")
    if control.kind == "fact" and control.fact not in FACTS:
        problems.append(f"fact {control.fact!r}")
    if control.params is not None and control.params not in PARAMS:
        problems.append(f"params {control.params!r}")
    if control.scope not in ("server", PLATFORM):
        problems.append(f"scope {control.scope!r}")
    if not control.requirements or set(control.requirements) - set(FRAMEWORKS):
        problems.append(f"requirements of {sorted(control.requirements)}")
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}")
    return control


def parse(raw: dict[str, Any]) -> Catalog:
    """The catalog from its JSON; ValueError naming what is wrong."""
    frameworks = {
        key: Framework(
            key,
            str(f["name"]),
            str(f["source"]),
            f.get("audit_retention_days"),
            str(f.get("audit_retention_basis") or ""),
        )  # fmt: skip
        for key, f in raw["frameworks"].items()
    }
    if set(frameworks) != set(FRAMEWORKS):
        raise ValueError(f"the catalog describes {sorted(frameworks)}, not {sorted(FRAMEWORKS)}")
    controls = tuple(_control(c) for c in raw["controls"])
    ids = [c.id for c in controls]
    if len(set(ids)) != len(ids):
        raise ValueError("two controls share an id")
    return Catalog(frameworks, controls)


@functools.cache
def load() -> Catalog:
    text = resources.files("pgfleet.domains.compliance").joinpath("data/controls.json").read_text()
    return parse(json.loads(text))


def select(catalog: Catalog, framework: str, wanted: list[str]) -> list[Control]:
    """The controls of `framework` that `wanted` names: control ids, or requirement ids (a
    requirement also selects its sub-requirements: `164.308(a)(1)` selects
    `164.308(a)(1)(ii)(D)`). An id that selects nothing is a 422."""
    controls = catalog.of(framework)
    chosen: list[Control] = []
    unknown = []
    for item in wanted:
        hits = [
            c for c in controls
            if c.id == item or any(r == item or r.startswith(item + "(") or r.startswith(item + ".")
                                   for r in c.requirement_ids(framework))
        ]  # fmt: skip
        if not hits:
            unknown.append(item)
        chosen += [c for c in hits if c not in chosen]
    if unknown:
        raise ValidationFailed(
            f"specific_controls: {', '.join(unknown)} name no control or requirement of {framework}",
            details={"field": "specific_controls", "unknown": unknown,
                     "known": sorted({r for c in controls for r in c.requirement_ids(framework)})},
        )  # fmt: skip
    return [c for c in controls if c in chosen]
