"""What the signals say, as pure functions (no port): which log lines are failed logins, which
error statements and API inputs carry an attack's signature, which statements (pgaudit) and
catalog changes raise a role's privileges, and how confident and severe each finding is.

Managed servers log every connection (`log_connections`), the statement of every error
(`log_min_error_statement = error`) and, with pgaudit, role changes and DDL
(`pgaudit.log = 'role, ddl'`); see pgfleet.adapters.engines.local.postgres.config.

Confidence (0..100) is computed from the evidence, never set:
- BRUTE_FORCE: 100 x (0.5 x volume + 0.3 x rate + 0.2 x kind), where volume is the failures
  against 3 x the threshold (capped at 1), rate the failures per minute against
  RATE_FULL_PER_MINUTE (capped at 1), and kind 1 for wrong passwords (a known role is being
  guessed), 0.5 for logins no pg_hba.conf line admits (probing) or API 401s from more than one
  user agent; a successful login from the same source and role after the failures makes it
  at least 95 (the guess may have worked).
- SQL_INJECTION and XSS: the signatures matched are independent pieces of evidence of weight
  w each: 100 x (1 - prod(1 - w)), times a repetition factor 0.7 + 0.3 x min(1, n / 3) for n
  statements (requests) carrying them.
- PRIVILEGE_ESCALATION: each signal that saw the change (pgaudit's statement 0.9, the catalog
  diff 0.8) is independent: 100 x (1 - prod(1 - w)); both give 98.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from pglast import ast, parse_sql
from pglast.parser import ParseError

from pgfleet.ports.engine import LogLine

# --- BRUTE_FORCE -----------------------------------------------------------------------------

WINDOW_MINUTES = 5  # the sliding window failures are counted over
FAILED_LOGINS_THRESHOLD = 10  # per source and role within the window (the API: 401s per source)
RATE_FULL_PER_MINUTE = 10.0
HIGH_FAILURES_FACTOR = 2  # HIGH from 2 x the threshold, or from RATE_FULL_PER_MINUTE

_USER = re.compile(r'\buser "((?:[^"]|"")*)"')
_HOST = re.compile(r'\bhost "([0-9A-Fa-f:.]+)"')
_AUTHORIZED = re.compile(r"^connection authorized: user=(\S+)")


@dataclass(frozen=True)
class LoginFailure:
    source_ip: str | None
    role: str | None
    database: str | None
    reason: str  # "password" | "no_hba"


def login_failure(line: LogLine) -> LoginFailure | None:
    """A failed login: FATAL "password authentication failed" (28P01) or "no pg_hba.conf
    entry" (28000). A refusal by a reject line (a mitigation at work) is not counted."""
    if line.severity != "FATAL":
        return None
    if line.sqlstate == "28P01" or line.message.startswith("password authentication failed"):
        reason = "password"
    elif line.message.startswith("no pg_hba.conf entry"):
        reason = "no_hba"
    else:
        return None
    user = _USER.search(line.message)
    host = _HOST.search(line.message)
    return LoginFailure(
        source_ip=line.remote_host or (host[1] if host else None),
        role=line.user or (user[1].replace('""', '"') if user else None),
        database=line.database,
        reason=reason,
    )


TLS_FALLBACK_SECONDS = 2.0  # libpq's plaintext retry follows its TLS attempt within this


def tls_fallback(previous: tuple[LogLine, LoginFailure] | None, line: LogLine, failure: LoginFailure) -> bool:
    """True when `failure` is the second half of one login: libpq with sslmode=prefer (its
    default) that fails to authenticate over TLS retries at once without TLS, and a server
    that admits TCP over TLS only (hostssl) refuses that retry with "no pg_hba.conf entry ...
    no encryption". `previous` is the last failure from the same source, role and database;
    it must have matched a hostssl line, and the retry must follow it within
    TLS_FALLBACK_SECONDS. One guess, counted once, by its password failure."""
    if previous is None or failure.reason != "no_hba" or "no encryption" not in line.message:
        return False
    first_line, first = previous
    return (
        first.reason == "password"
        and "hostssl" in (first_line.detail or "")
        and 0 <= (line.timestamp - first_line.timestamp).total_seconds() <= TLS_FALLBACK_SECONDS
    )


def login_success(line: LogLine) -> tuple[str | None, str] | None:
    """(source, role) of a "connection authorized" line (log_connections), else None."""
    if line.severity != "LOG":
        return None
    found = _AUTHORIZED.match(line.message)
    if not found:
        return None
    return line.remote_host, line.user or found[1]


def brute_force_confidence(
    failures: int,
    minutes: float,
    kind: float,
    succeeded_after: bool,
    threshold: int = FAILED_LOGINS_THRESHOLD,
) -> float:
    """See the module docstring. `minutes`: from the first to the last failure (at least 1)."""
    volume = min(1.0, failures / (3 * threshold))
    rate = min(1.0, failures / max(1.0, minutes) / RATE_FULL_PER_MINUTE)
    score = 100 * (0.5 * volume + 0.3 * rate + 0.2 * kind)
    if succeeded_after:
        score = max(score, 95.0)
    return round(min(score, 100.0), 1)


PROBED_PERMISSIONS_HIGH = 5  # distinct permissions one caller was refused within the window


def probing_severity(denials: int, permissions: int, threshold: int = FAILED_LOGINS_THRESHOLD) -> str:
    """A caller refused (403) again and again: MEDIUM; HIGH when it is twice the threshold, or
    when it tried PROBED_PERMISSIONS_HIGH permissions or more (a sweep, not a wrong button)."""
    if denials >= HIGH_FAILURES_FACTOR * threshold or permissions >= PROBED_PERMISSIONS_HIGH:
        return "HIGH"
    return "MEDIUM"


def brute_force_severity(
    failures: int, minutes: float, succeeded_after: bool, threshold: int = FAILED_LOGINS_THRESHOLD
) -> str:
    if succeeded_after:
        return "CRITICAL"
    if failures >= HIGH_FAILURES_FACTOR * threshold or failures / max(1.0, minutes) >= RATE_FULL_PER_MINUTE:
        return "HIGH"
    return "MEDIUM"


# --- signatures (SQL_INJECTION, XSS) ---------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    weight: float


SQL_SIGNATURES = (
    # OR 1=1, OR 'a'='a', AND "x"="x": an equality of a value with itself.
    Signature("tautology", re.compile(r"\b(?:or|and)\s+(['\"]?)(\w+)\1\s*=\s*\1\2\1", re.I), 0.5),
    Signature("tautology", re.compile(r"'\s*or\s+(?:true|not\s+false)\b", re.I), 0.5),
    Signature("union_select", re.compile(r"\bunion\s+(?:all\s+)?select\b", re.I), 0.35),
    Signature("union_probe", re.compile(r"\bunion\s+(?:all\s+)?select\s+null\b", re.I), 0.6),
    Signature(
        "stacked_query",
        re.compile(
            r"['\d)]\s*;\s*(?:drop|delete|insert|update|create|alter|truncate|grant|select|copy)\b", re.I
        ),
        0.6,
    ),
    Signature("comment_truncation", re.compile(r"'\s*(?:--|#|/\*)"), 0.45),
)
# Errors an injection attempt provokes (the server's message, not the statement).
SQL_ERROR_SIGNATURES = (
    Signature("union_probe", re.compile(r"^each UNION query must have the same number of columns"), 0.6),
    Signature("unterminated_quote", re.compile(r"^unterminated quoted string"), 0.3),
)
DESTRUCTIVE = re.compile(r";\s*(?:drop|delete|truncate|alter|grant)\b", re.I)

XSS_SIGNATURES = (
    Signature("script_tag", re.compile(r"<\s*/?\s*script\b", re.I), 0.7),
    Signature("event_handler", re.compile(r"<[^>]*\bon[a-z]{3,}\s*=", re.I), 0.5),
    Signature("javascript_uri", re.compile(r"\bjavascript\s*:", re.I), 0.45),
    Signature("active_element", re.compile(r"<\s*(?:iframe|object|embed|svg|img)\b[^>]*>?", re.I), 0.2),
    Signature(
        "dom_access",
        re.compile(r"\bdocument\s*\.\s*(?:cookie|domain|write)|\bwindow\s*\.\s*location", re.I),
        0.3,
    ),
)


def matched(text: str, signatures: tuple[Signature, ...]) -> dict[str, float]:
    """{signature name: weight} of the signatures `text` carries."""
    found: dict[str, float] = {}
    for sig in signatures:
        if sig.pattern.search(text):
            found[sig.name] = max(found.get(sig.name, 0.0), sig.weight)
    return found


def combined_confidence(weights: dict[str, float], occurrences: int) -> float:
    """100 x (1 - prod(1 - w)) x (0.7 + 0.3 x min(1, occurrences / 3)), see the module docstring."""
    miss = 1.0
    for weight in weights.values():
        miss *= 1 - weight
    return round(100 * (1 - miss) * (0.7 + 0.3 * min(1.0, occurrences / 3)), 1)


def sql_injection(line: LogLine) -> dict[str, float]:
    """The injection signatures of an error line: of its statement and of its message."""
    if line.severity != "ERROR" or not line.query:
        return {}
    found = matched(line.query, SQL_SIGNATURES)
    found.update(
        {k: v for k, v in matched(line.message, SQL_ERROR_SIGNATURES).items() if v > found.get(k, 0)}
    )
    return found


def sql_injection_severity(signatures: set[str], statements: list[str]) -> str:
    if "stacked_query" in signatures and any(DESTRUCTIVE.search(s) for s in statements):
        return "CRITICAL"
    if len(signatures) >= 2 or "union_probe" in signatures:
        return "HIGH"
    return "MEDIUM"


def decoded(text: str) -> str:
    """Input as a browser would read it: URL-decoded and HTML entities resolved, once each."""
    return html.unescape(unquote_plus(text))


def xss(text: str) -> dict[str, float]:
    """The script-payload signatures of API input (a body or a query string)."""
    found = matched(text, XSS_SIGNATURES)
    plain = decoded(text)
    if plain != text:
        found.update({k: v for k, v in matched(plain, XSS_SIGNATURES).items() if v > found.get(k, 0)})
    # An element alone (an <img> in rich text) is no payload: it needs something active with it.
    if set(found) == {"active_element"}:
        return {}
    return found


# --- PRIVILEGE_ESCALATION --------------------------------------------------------------------

PGAUDIT_WEIGHT = 0.9
CATALOG_WEIGHT = 0.8
# Role attributes that raise privileges, and how severe granting each is.
ATTRIBUTES = {"superuser": "CRITICAL", "createrole": "HIGH", "replication": "HIGH", "bypassrls": "HIGH"}
# Predefined roles whose membership reads or writes outside the database's own grants.
PRIVILEGED_PREDEFINED = frozenset(
    {
        "pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_read_all_data",
        "pg_write_all_data", "pg_signal_backend", "pg_checkpoint", "pg_create_subscription", "pg_use_reserved_connections",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Escalation:
    """One change that raises privileges: `kind` is "attribute" (SUPERUSER, CREATEROLE, ...),
    "membership" (granted a privileged role) or "security_definer" (a SECURITY DEFINER routine
    without a pinned search_path, which runs as its owner for anyone who finds it first)."""

    kind: str
    subject: str  # the role given it, or the routine
    privilege: str  # "superuser", "member of pg_write_server_files", "security definer"
    severity: str
    statement: str | None = None
    database: str | None = None  # of a routine (routines are per database)

    @property
    def key(self) -> str:
        """What the same change is called by every signal (a routine by its bare name)."""
        if self.kind == "security_definer":
            return f"{self.kind}|{self.database or ''}|{self.subject.split('(')[0].split('.')[-1]}"
        return f"{self.kind}|{self.subject}|{self.privilege}"


@dataclass(frozen=True)
class AuditEntry:
    """A pgaudit line: AUDIT: SESSION,<statement>,<substatement>,<class>,<command>,<object type>,
    <object name>,<statement>,<parameter>."""

    audit_class: str
    command: str
    statement: str


def pgaudit_entry(line: LogLine) -> AuditEntry | None:
    if not line.message.startswith("AUDIT: "):
        return None
    try:
        fields = next(csv.reader(io.StringIO(line.message[len("AUDIT: ") :])))
    except (csv.Error, StopIteration):
        return None
    if len(fields) < 8:
        return None
    return AuditEntry(audit_class=fields[3], command=fields[4], statement=fields[7])


def _true(arg: object) -> bool:
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    return arg is None  # "SUPERUSER" spelled bare


def _role_names(specs: tuple[Any, ...] | None) -> list[str]:
    return [str(s.rolename) for s in (specs or ()) if isinstance(s, ast.RoleSpec) and s.rolename]


def _routine_name(names: tuple[Any, ...] | None) -> str:
    return ".".join(str(n.sval) for n in (names or ()) if isinstance(n, ast.String))


def _definer_without_path(options: tuple[Any, ...] | None) -> bool:
    definer = pinned = False
    for option in options or ():
        if not isinstance(option, ast.DefElem):
            continue
        if option.defname == "security" and _true(option.arg):
            definer = True
        if option.defname == "set" and isinstance(option.arg, ast.VariableSetStmt):
            pinned = pinned or option.arg.name == "search_path"
    return definer and not pinned


def escalations(statement: str, privileged_roles: frozenset[str] = frozenset()) -> list[Escalation]:
    """What a statement (pgaudit's) gives that raises privileges. `privileged_roles`: roles
    known to hold a raising attribute (membership in one is an escalation too)."""
    try:
        parsed = parse_sql(statement)
    except (ParseError, ValueError):
        return []
    found: list[Escalation] = []
    for raw in parsed:
        stmt = raw.stmt
        if isinstance(stmt, ast.CreateRoleStmt | ast.AlterRoleStmt):
            role = stmt.role if isinstance(stmt.role, str) else (stmt.role.rolename if stmt.role else None)
            if not role:
                continue
            for option in stmt.options or ():
                name = option.defname
                if name in ATTRIBUTES and _true(option.arg):
                    found.append(Escalation("attribute", role, name, ATTRIBUTES[name], statement))
                if name == "addroleto":  # CREATE ROLE ... IN ROLE x
                    for granted in _role_names(option.arg):
                        if granted in PRIVILEGED_PREDEFINED or granted in privileged_roles:
                            found.append(_membership(role, granted, privileged_roles, statement))
        elif isinstance(stmt, ast.GrantRoleStmt) and stmt.is_grant:
            for priv in stmt.granted_roles or ():
                granted = str(getattr(priv, "priv_name", None) or "")
                if granted and (granted in PRIVILEGED_PREDEFINED or granted in privileged_roles):
                    for grantee in _role_names(stmt.grantee_roles):
                        found.append(_membership(grantee, granted, privileged_roles, statement))
        elif isinstance(stmt, ast.CreateFunctionStmt) and _definer_without_path(stmt.options):
            found.append(
                Escalation(
                    "security_definer", _routine_name(stmt.funcname), "security definer", "HIGH", statement
                )
            )
        elif isinstance(stmt, ast.AlterFunctionStmt) and _definer_without_path(stmt.actions):
            name = _routine_name(stmt.func.objname if stmt.func else None)
            found.append(Escalation("security_definer", name, "security definer", "HIGH", statement))
    return found


def _membership(
    grantee: str, granted: str, privileged_roles: frozenset[str], statement: str | None
) -> Escalation:
    severity = "CRITICAL" if granted in privileged_roles and granted not in PRIVILEGED_PREDEFINED else "HIGH"
    return Escalation("membership", grantee, f"member of {granted}", severity, statement)


@dataclass
class CatalogSnapshot:
    """What the catalog diff compares: roles by raising attribute, memberships in privileged
    roles, and SECURITY DEFINER routines without a pinned search_path (per database)."""

    attributes: dict[str, list[str]] = field(default_factory=dict)  # role -> ["superuser", ...]
    memberships: dict[str, list[str]] = field(default_factory=dict)  # role -> [granted role, ...]
    definers: list[str] = field(default_factory=list)  # "database<TAB>schema.routine(args)"

    def as_data(self) -> dict[str, object]:
        return {"attributes": self.attributes, "memberships": self.memberships, "definers": self.definers}

    @classmethod
    def of(cls, data: dict[str, object]) -> CatalogSnapshot:
        return cls(
            attributes={k: list(v) for k, v in dict(data.get("attributes") or {}).items()},  # type: ignore[call-overload]
            memberships={k: list(v) for k, v in dict(data.get("memberships") or {}).items()},  # type: ignore[call-overload]
            definers=list(data.get("definers") or []),  # type: ignore[call-overload]
        )


def catalog_escalations(before: CatalogSnapshot, after: CatalogSnapshot) -> list[Escalation]:
    """What the catalog gained since the previous scan."""
    privileged = frozenset(after.attributes)
    found = []
    for role, attributes in sorted(after.attributes.items()):
        for attribute in sorted(set(attributes) - set(before.attributes.get(role, []))):
            found.append(Escalation("attribute", role, attribute, ATTRIBUTES.get(attribute, "HIGH")))
    for role, granted in sorted(after.memberships.items()):
        for name in sorted(set(granted) - set(before.memberships.get(role, []))):
            found.append(_membership(role, name, privileged, None))
    for entry in sorted(set(after.definers) - set(before.definers)):
        database, _, routine = entry.partition("\t")
        found.append(Escalation("security_definer", routine, "security definer", "HIGH", None, database))
    return found


def escalation_confidence(signals: set[str]) -> float:
    miss = 1.0
    for signal in signals:
        miss *= 1 - (PGAUDIT_WEIGHT if signal == "pgaudit" else CATALOG_WEIGHT)
    return round(100 * (1 - miss), 1)
