"""The CVE dataset and the match of one server's components against it.

The dataset is data, not code: `data/postgresql_cves.json` is shipped with the package (its
`source` and `retrieved` say where every entry comes from), and `pgfleet cve import FILE`
replaces it with a file of the same shape, kept under PGFLEET_HOME (`cves/dataset.json`),
which the API then reads instead. An entry is one CVE of one component:

- `postgresql`: `fixed_in` maps each affected major to the minor that fixes it
  (`{"15": "15.18"}`); a server is affected when its major is listed and its minor is below
  that one. A major the entry does not list is not matched (an EOL major gets no fix: the
  EOL block says so). `extension`, when set, limits the entry to servers where that
  extension is installed in some database.
- `pgbouncer`, `pgbackrest`, `patroni`: `fixed_version`, the first release without the flaw.

Severity follows the CVSS v3 score (>= 9 CRITICAL, >= 7 HIGH, >= 4 MEDIUM, else LOW); an
entry without a score has no severity (and so no deadline), never a guessed one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from pgfleet.core.errors import ValidationFailed

COMPONENTS = ("postgresql", "pgbouncer", "pgbackrest", "patroni")
DISPLAY = {
    "postgresql": "PostgreSQL",
    "pgbouncer": "PgBouncer",
    "pgbackrest": "pgBackRest",
    "patroni": "Patroni",
}
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Days from discovery to the remediation deadline. CRITICAL 7 and HIGH 30 are the issue's;
# MEDIUM 90 and LOW 180 are our choice: a quarter and half a year, the cadence of
# PostgreSQL's quarterly minor releases, so a MEDIUM finding is fixed by the next-but-one.
DEADLINE_DAYS = {"CRITICAL": 7, "HIGH": 30, "MEDIUM": 90, "LOW": 180}
IMPORTED = Path("cves") / "dataset.json"
_CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")
_VERSION = re.compile(r"^\d+(\.\d+)*$")


def severity_of(cvss: float | None) -> str | None:
    """The severity band of a CVSS v3 base score; None for an unscored CVE."""
    if cvss is None:
        return None
    if cvss >= 9.0:
        return "CRITICAL"
    if cvss >= 7.0:
        return "HIGH"
    if cvss >= 4.0:
        return "MEDIUM"
    return "LOW"


def version_tuple(text: str) -> tuple[int, ...]:
    """ "1.18.0" -> (1, 18, 0); the leading numeric part of a version string."""
    match = re.match(r"\d+(\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a version")
    return tuple(int(p) for p in match.group(0).split("."))


def pg_version(server_version_num: int) -> tuple[int, int]:
    """(major, minor) of a server_version_num of PostgreSQL 10 or later (150020 -> (15, 20))."""
    return server_version_num // 10000, server_version_num % 10000


@dataclass(frozen=True)
class Cve:
    cve_id: str
    component: str
    title: str
    summary: str
    cvss: float | None
    published: str | None
    fixed_in: dict[int, int] = field(default_factory=dict)  # major -> fixing minor (postgresql)
    fixed_version: tuple[int, ...] | None = None  # first fixed release (other components)
    extension: str | None = None
    sources: tuple[str, ...] = ()

    @property
    def severity(self) -> str | None:
        return severity_of(self.cvss)


@dataclass(frozen=True)
class Dataset:
    cves: tuple[Cve, ...]
    eol: dict[int, date]
    source: tuple[str, ...]
    retrieved: str
    origin: str  # "shipped" or the path of the imported file

    def by_component(self, component: str) -> tuple[Cve, ...]:
        return tuple(c for c in self.cves if c.component == component)


@dataclass(frozen=True)
class ServerComponents:
    """What one server runs, as read from it: its exact version, its extensions (name ->
    version, over every database that accepts connections), and the satellite programs in
    front of or beside it (name -> version)."""

    target_id: str
    tenant_id: str
    server_version_num: int
    server_version: str
    extensions: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    cve: Cve
    component: str
    installed: str  # the installed version, as the component reports it
    patch_version: str  # the release that fixes it, e.g. "15.18"


def match(dataset: Dataset, server: ServerComponents) -> list[Match]:
    """The dataset's CVEs that apply to `server`, most severe first."""
    found: list[Match] = []
    major, minor = pg_version(server.server_version_num)
    for cve in dataset.by_component("postgresql"):
        fixing = cve.fixed_in.get(major)
        if fixing is None or minor >= fixing:
            continue
        if cve.extension is not None and cve.extension not in server.extensions:
            continue
        found.append(Match(cve, "postgresql", server.server_version, f"{major}.{fixing}"))
    for tool, installed in sorted(server.tools.items()):
        try:
            have = version_tuple(installed)
        except ValueError:
            continue
        for cve in dataset.by_component(tool):
            if cve.fixed_version is not None and have < cve.fixed_version:
                found.append(Match(cve, tool, installed, ".".join(map(str, cve.fixed_version))))
    found.sort(key=lambda m: (-(m.cve.cvss or 0.0), m.cve.cve_id, m.component))
    return found


# --- the dataset file ------------------------------------------------------------------------


def _fail(message: str, where: str) -> ValidationFailed:
    return ValidationFailed(f"CVE dataset: {message}", details={"field": where})


def parse(raw: Any, origin: str = "shipped") -> Dataset:
    """A dataset from its JSON shape; ValidationFailed naming the first wrong field."""
    if not isinstance(raw, dict):
        raise _fail("the file must hold one JSON object", "$")
    source = raw.get("source")
    if isinstance(source, str):
        source = [source]
    if not isinstance(source, list) or not source or not all(isinstance(s, str) and s for s in source):
        raise _fail("`source` must name where the data comes from (a URL or a list of URLs)", "source")
    retrieved = raw.get("retrieved")
    try:
        date.fromisoformat(str(retrieved))
    except ValueError:
        raise _fail("`retrieved` must be the date the data was taken (YYYY-MM-DD)", "retrieved") from None
    eol: dict[int, date] = {}
    for major, when in (raw.get("eol") or {}).items():
        try:
            eol[int(major)] = date.fromisoformat(str(when))
        except ValueError:
            raise _fail(f"eol[{major!r}] must map a major to a date (YYYY-MM-DD)", f"eol.{major}") from None
    entries = raw.get("cves")
    if not isinstance(entries, list):
        raise _fail("`cves` must be a list", "cves")
    return Dataset(
        tuple(_cve(e, i) for i, e in enumerate(entries)), eol, tuple(source), str(retrieved), origin
    )


def _cve(entry: Any, index: int) -> Cve:
    where = f"cves[{index}]"
    if not isinstance(entry, dict):
        raise _fail("each CVE must be an object", where)
    cve_id = entry.get("cve_id")
    if not isinstance(cve_id, str) or not _CVE_ID.match(cve_id):
        raise _fail(f"cve_id {cve_id!r} is not a CVE id (CVE-YYYY-NNNN)", f"{where}.cve_id")
    component = entry.get("component")
    if component not in COMPONENTS:
        raise _fail(f"{cve_id}: component must be one of {', '.join(COMPONENTS)}", f"{where}.component")
    cvss = entry.get("cvss_v3")
    if cvss is not None and (
        isinstance(cvss, bool) or not isinstance(cvss, int | float) or not 0 <= cvss <= 10
    ):
        raise _fail(f"{cve_id}: cvss_v3 must be a score from 0 to 10, or null", f"{where}.cvss_v3")
    title = entry.get("title")
    if not isinstance(title, str) or not title:
        raise _fail(f"{cve_id}: title is required", f"{where}.title")
    fixed_in: dict[int, int] = {}
    fixed_version: tuple[int, ...] | None = None
    if component == "postgresql":
        pairs = entry.get("fixed_in")
        if not isinstance(pairs, dict) or not pairs:
            raise _fail(
                f"{cve_id}: fixed_in must map each affected major to its fixing minor", f"{where}.fixed_in"
            )
        for major, minor in pairs.items():
            parts = str(minor).split(".")
            if len(parts) != 2 or parts[0] != str(major) or not all(p.isdigit() for p in parts):
                raise _fail(f"{cve_id}: fixed_in[{major!r}] must be a minor of that major, e.g. \"15.18\"",
                            f"{where}.fixed_in.{major}")  # fmt: skip
            fixed_in[int(major)] = int(parts[1])
    else:
        text = entry.get("fixed_version")
        if not isinstance(text, str) or not _VERSION.match(text):
            raise _fail(f'{cve_id}: fixed_version must be a release, e.g. "1.25.2"', f"{where}.fixed_version")
        fixed_version = version_tuple(text)
    extension = entry.get("extension")
    if extension is not None and not isinstance(extension, str):
        raise _fail(f"{cve_id}: extension must be an extension name", f"{where}.extension")
    return Cve(
        cve_id=cve_id, component=component, title=title, summary=str(entry.get("summary") or ""),
        cvss=float(cvss) if cvss is not None else None, published=entry.get("published"),
        fixed_in=fixed_in, fixed_version=fixed_version, extension=extension,
        sources=tuple(str(s) for s in entry.get("sources") or ()),
    )  # fmt: skip


_cache: dict[tuple[str, float], Dataset] = {}


def _read(path: Path, origin: str) -> Dataset:
    key = (str(path), path.stat().st_mtime)
    if key not in _cache:
        _cache.clear()
        _cache[key] = parse(json.loads(path.read_text()), origin)
    return _cache[key]


def shipped_path() -> Path:
    return Path(str(resources.files("pgfleet.domains.security") / "data" / "postgresql_cves.json"))


def load(home: Path) -> Dataset:
    """The dataset the API matches against: the imported one when there is one, else the
    shipped one."""
    imported = home / IMPORTED
    if imported.is_file():
        return _read(imported, str(imported))
    return _read(shipped_path(), "shipped")


def import_file(path: Path, home: Path) -> Dataset:
    """Validate `path` and make it the dataset (written atomically: a bad file changes
    nothing). Raises ValidationFailed (the field at fault) or ValueError (unreadable JSON)."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
    target = home / IMPORTED
    dataset = parse(raw, str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".tmp")
    scratch.write_text(json.dumps(raw, indent=1))
    os.replace(scratch, target)
    return dataset
