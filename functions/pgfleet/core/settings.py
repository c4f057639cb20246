"""Settings from the environment, read once per process."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TenantLimits:
    """The most one tenant may hold at once (PGFLEET_TENANT_MAX_*). `instances` counts single
    instances and clusters; `nodes` counts PostgreSQL servers (an instance, each cluster node,
    each read replica), which also bounds the ports a tenant takes from the shared pool."""

    instances: int = 10
    nodes: int = 20
    memory_mb: int = 16384
    cpu: int = 16
    storage_gb: int = 500

    @staticmethod
    def env_name(limit: str) -> str:
        return f"PGFLEET_TENANT_MAX_{limit.upper()}"

    @classmethod
    def from_env(cls) -> TenantLimits:
        d = cls()
        return cls(
            instances=int(os.environ.get("PGFLEET_TENANT_MAX_INSTANCES", str(d.instances))),
            nodes=int(os.environ.get("PGFLEET_TENANT_MAX_NODES", str(d.nodes))),
            memory_mb=int(os.environ.get("PGFLEET_TENANT_MAX_MEMORY_MB", str(d.memory_mb))),
            cpu=int(os.environ.get("PGFLEET_TENANT_MAX_CPU", str(d.cpu))),
            storage_gb=int(os.environ.get("PGFLEET_TENANT_MAX_STORAGE_GB", str(d.storage_gb))),
        )


ETCD_PORT = 12379
ETCD_PEER_PORT = 12380


@dataclass(frozen=True)
class Settings:
    home: Path
    aws_port: int
    etcd_port: int
    etcd_peer_port: int
    api_port: int
    aws_endpoint_url: str | None
    region: str
    table_name: str
    queue_name: str
    schedule_group: str
    engine: str
    auth_mode: str  # "local" (HS256, secret under home) or "jwks"
    jwt_issuer: str | None
    jwks_url: str | None
    jwt_audience: str | None
    scheduled_function_arn: str
    scheduler_role_arn: str
    # The HistoryStore's own table (pgfleet.adapters.history): captures, metrics, audit events.
    history_table_name: str = "pgfleet-history"
    # Admission (pgfleet.core.admission): what one tenant may hold in all, summed over its
    # instances, clusters (every node) and read replicas...
    tenant_limits: TenantLimits = TenantLimits()
    # ...and what a request must leave free on the host: memory (MemAvailable) and disk
    # (the filesystem of PGFLEET_HOME) beyond what it asks for.
    host_memory_headroom_mb: int = 1024
    host_disk_headroom_gb: int = 5
    # A resource in a transitional status that no operation works on (none stored, or it
    # ended) for this long is stranded: reconcile marks it failed, and delete accepts it.
    stranded_after_seconds: int = 120
    # A cluster node further behind its primary than this (bytes of WAL, as Patroni reports
    # it) is refused promotion at request time (409). Patroni itself never promotes a node
    # beyond its maximum_lag_on_failover (1 MiB, ports.cluster_engine.HEALTHY_LAG_BYTES), so a
    # larger value only moves the refusal into the operation.
    promote_max_lag_bytes: int = 1024 * 1024
    # The API platform (handlers/api.py): audit events and API-metrics records live this long
    # in the history store (DynamoDB TTL); an audit query may not reach further back.
    audit_retention_days: int = 365
    api_metrics_retention_days: int = 30
    # Rate limits (core/rate_limits.py): counters in their own table (TTL), the plan of each
    # tenant that is not on the default one ("acme=premium,ops=system"), and a switch for the
    # request middleware (rate limits, audit and metrics records; authentication stays).
    rate_limit_table_name: str = "pgfleet-rate-limits"
    tenant_plans: tuple[tuple[str, str], ...] = ()
    # Limits of a plan other than the seed's ("standard=2000/100,system=20000/400": per hour /
    # per minute); the plans not named keep theirs.
    plan_limits: tuple[tuple[str, str], ...] = ()
    api_middleware: bool = True
    # Threat detection (pgfleet.domains.security): block the source of a HIGH or CRITICAL brute
    # force by itself (off: people decide, `POST /api/v1/security/threats/investigate`), and
    # for how long.
    threat_auto_mitigation: bool = False
    threat_mitigation_seconds: int = 900
    # A detected threat of this severity or worse opens a security incident by itself
    # ("HIGH": HIGH and CRITICAL; "CRITICAL"; None: "off", people open them).
    threat_auto_incident: str | None = "HIGH"
    # In AWS: each request's metrics also go to CloudWatch as EMF (Powertools Metrics).
    emf_metrics: bool = False
    # Real-time events (pgfleet.domains.events): the WebSocket endpoint subscribers connect to
    # (locally the gateway's second port) and the management API that pushes to them (in AWS
    # https://{api}.execute-api.{region}.amazonaws.com/{stage}; locally the gateway).
    ws_port: int = 8081
    events_endpoint_url: str = "http://127.0.0.1:8080"
    # Compliance reports, evidence packages and attested evidence (pgfleet.ports.object_store).
    reports_bucket: str = "pgfleet-reports"
    # The CA that signs the servers' certificates: connection URIs verify against it
    # (sslmode=verify-full). Locally the engine's own CA (pgfleet.adapters.engines.local.tls).
    tls_root_cert: str | None = None
    # The majors whose `uri` demands verify-full. Empty by default: a server upgraded from 15
    # to the embedded 18 (no OpenSSL) would refuse the URI it was given; libpq's default
    # (prefer) still negotiates TLS with the servers that require it (hostssl), and a server
    # with TLS gives `verified_uri` beside it. "auto" (None): the majors the engine runs with
    # TLS (Engine.tls_versions).
    tls_majors: tuple[str, ...] | None = ()

    @property
    def runtime_dir(self) -> Path:
        return self.home / "run"

    @property
    def etcd_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def data_dir(self) -> Path:
        """Where the local engines keep servers, clusters and templates."""
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


# The engines this build has (wiring.Dependencies.engine). The RDS engine the AWS deployment
# names is not built yet: a deployment with it fails at cold start, saying so.
ENGINES = ("local",)


def _engine(text: str) -> str:
    value = text.strip().lower()
    if value in ENGINES:
        return value
    if value == "rds":
        raise ValueError(
            "PGFLEET_ENGINE=rds: the Amazon RDS engine is not part of this build yet; engines: "
            + ", ".join(ENGINES)
        )
    raise ValueError(f"PGFLEET_ENGINE={text!r} is not an engine; engines: {', '.join(ENGINES)}")


def _majors(text: str) -> tuple[str, ...] | None:
    value = text.strip().lower()
    if value == "auto":
        return None
    if value in ("", "none"):
        return ()
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _auto_incident(text: str) -> str | None:
    value = text.strip().upper()
    if value in ("OFF", "0", "FALSE", ""):
        return None
    if value not in ("HIGH", "CRITICAL"):
        raise ValueError(f"PGFLEET_THREAT_AUTO_INCIDENT must be HIGH, CRITICAL or off, not {text!r}")
    return value


def _pairs(text: str, name: str) -> tuple[tuple[str, str], ...]:
    """`a=x,b=y` as ((a, x), (b, y)); a malformed entry is a configuration error."""
    pairs = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{name}: {entry!r} is not key=value")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


@functools.cache
def get_settings() -> Settings:
    home = Path(os.environ.get("PGFLEET_HOME", Path.home() / ".pgfleet")).resolve()
    aws_port = int(os.environ.get("PGFLEET_AWS_PORT", "4566"))
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint is None and os.environ.get("PGFLEET_ENGINE", "local") == "local":
        endpoint = f"http://127.0.0.1:{aws_port}"
    account = os.environ.get("PGFLEET_AWS_ACCOUNT", "000000000000")
    region = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return Settings(
        home=home,
        aws_port=aws_port,
        # Not Debian's etcd ports (2379, 2380): a user's own etcd may run there.
        etcd_port=int(os.environ.get("PGFLEET_ETCD_PORT", str(ETCD_PORT))),
        etcd_peer_port=int(os.environ.get("PGFLEET_ETCD_PEER_PORT", str(ETCD_PEER_PORT))),
        api_port=int(os.environ.get("PGFLEET_API_PORT", "8080")),
        aws_endpoint_url=endpoint,
        region=region,
        table_name=os.environ.get("PGFLEET_TABLE", "pgfleet"),
        history_table_name=os.environ.get("PGFLEET_HISTORY_TABLE", "pgfleet-history"),
        tenant_limits=TenantLimits.from_env(),
        host_memory_headroom_mb=int(os.environ.get("PGFLEET_HOST_MEMORY_HEADROOM_MB", "1024")),
        host_disk_headroom_gb=int(os.environ.get("PGFLEET_HOST_DISK_HEADROOM_GB", "5")),
        stranded_after_seconds=int(os.environ.get("PGFLEET_STRANDED_AFTER_SECONDS", "120")),
        promote_max_lag_bytes=int(os.environ.get("PGFLEET_PROMOTE_MAX_LAG_BYTES", str(1024 * 1024))),
        audit_retention_days=int(os.environ.get("PGFLEET_AUDIT_RETENTION_DAYS", "365")),
        api_metrics_retention_days=int(os.environ.get("PGFLEET_API_METRICS_RETENTION_DAYS", "30")),
        rate_limit_table_name=os.environ.get("PGFLEET_RATE_LIMIT_TABLE", "pgfleet-rate-limits"),
        tenant_plans=_pairs(os.environ.get("PGFLEET_TENANT_PLANS", ""), "PGFLEET_TENANT_PLANS"),
        plan_limits=_pairs(os.environ.get("PGFLEET_RATE_LIMITS", ""), "PGFLEET_RATE_LIMITS"),
        api_middleware=os.environ.get("PGFLEET_API_MIDDLEWARE", "on").strip().lower()
        not in ("off", "0", "false"),
        emf_metrics=os.environ.get("PGFLEET_EMF_METRICS", "off").strip().lower() in ("on", "1", "true"),
        threat_auto_mitigation=os.environ.get("PGFLEET_THREAT_AUTO_MITIGATION", "off").strip().lower()
        in ("on", "1", "true"),
        threat_mitigation_seconds=int(os.environ.get("PGFLEET_THREAT_MITIGATION_SECONDS", "900")),
        threat_auto_incident=_auto_incident(os.environ.get("PGFLEET_THREAT_AUTO_INCIDENT", "HIGH")),
        ws_port=int(os.environ.get("PGFLEET_WS_PORT", "8081")),
        tls_majors=_majors(os.environ.get("PGFLEET_TLS_MAJORS", "")),
        tls_root_cert=os.environ.get("PGFLEET_TLS_ROOT_CERT")
        or (
            str(home / "data" / "tls" / "ca.crt")
            if os.environ.get("PGFLEET_ENGINE", "local") == "local"
            else None
        ),
        events_endpoint_url=os.environ.get(
            "PGFLEET_EVENTS_ENDPOINT", f"http://127.0.0.1:{os.environ.get('PGFLEET_API_PORT', '8080')}"
        ),
        reports_bucket=os.environ.get("PGFLEET_REPORTS_BUCKET", "pgfleet-reports"),
        queue_name=os.environ.get("PGFLEET_QUEUE", "pgfleet-operations"),
        schedule_group=os.environ.get("PGFLEET_SCHEDULE_GROUP", "pgfleet"),
        engine=_engine(os.environ.get("PGFLEET_ENGINE", "local")),
        auth_mode=os.environ.get("PGFLEET_AUTH_MODE", "local"),
        jwt_issuer=os.environ.get("PGFLEET_JWT_ISSUER"),
        jwks_url=os.environ.get("PGFLEET_JWKS_URL"),
        jwt_audience=os.environ.get("PGFLEET_JWT_AUDIENCE"),
        scheduled_function_arn=os.environ.get(
            "PGFLEET_SCHEDULED_FUNCTION_ARN",
            f"arn:aws:lambda:{region}:{account}:function:pgfleet-scheduled",
        ),
        scheduler_role_arn=os.environ.get(
            "PGFLEET_SCHEDULER_ROLE_ARN", f"arn:aws:iam::{account}:role/pgfleet-scheduler"
        ),
    )
