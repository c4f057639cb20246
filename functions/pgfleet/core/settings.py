"""Settings from the environment, read once per process."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path


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
        etcd_port=int(os.environ.get("PGFLEET_ETCD_PORT", "2379")),
        etcd_peer_port=int(os.environ.get("PGFLEET_ETCD_PEER_PORT", "2380")),
        api_port=int(os.environ.get("PGFLEET_API_PORT", "8080")),
        aws_endpoint_url=endpoint,
        region=region,
        table_name=os.environ.get("PGFLEET_TABLE", "pgfleet"),
        history_table_name=os.environ.get("PGFLEET_HISTORY_TABLE", "pgfleet-history"),
        queue_name=os.environ.get("PGFLEET_QUEUE", "pgfleet-operations"),
        schedule_group=os.environ.get("PGFLEET_SCHEDULE_GROUP", "pgfleet"),
        engine=os.environ.get("PGFLEET_ENGINE", "local"),
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
