"""A minimal client for Patroni's REST API (urllib, no new dependency).

GETs are unauthenticated (Patroni only guards unsafe methods); POST/PATCH send HTTP basic
auth with the cluster's REST password.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pgfleet.core.errors import EngineError
from pgfleet.ports.cluster_engine import NodeState

GET_TIMEOUT = 3.0
# Patroni answers POST /switchover only once the switchover is done (or after ~20 s of polling).
ACTION_TIMEOUT = 60.0

LEADER_ROLES = ("leader", "standby_leader")
SYNC_ROLES = ("sync_standby", "quorum_standby")
RUNNING_STATES = ("running", "streaming")


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # parsed JSON when the body is JSON, else the text


def call(
    base_url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = GET_TIMEOUT,
) -> Response:
    """One request; HTTP error statuses are returned, not raised. Raises OSError when
    Patroni does not answer at all."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    req = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, _parse(resp.read()))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, _parse(exc.read()))


def _parse(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def answers(base_url: str) -> bool:
    """Whether a Patroni answers on `base_url` at all (any HTTP status counts)."""
    try:
        call(base_url, "GET", "/liveness", timeout=1.0)
    except OSError:
        return False
    return True


def get_cluster(base_urls: list[str]) -> dict[str, Any] | None:
    """GET /cluster from the first Patroni that answers; None when none does."""
    for url in base_urls:
        try:
            resp = call(url, "GET", "/cluster")
        except OSError:
            continue
        if resp.status == 200 and isinstance(resp.body, dict):
            return resp.body
    return None


def leader_of(cluster: dict[str, Any]) -> dict[str, Any] | None:
    for member in cluster.get("members", []):
        if member.get("role") in LEADER_ROLES:
            return member
    return None


def member(cluster: dict[str, Any], name: str) -> dict[str, Any] | None:
    for m in cluster.get("members", []):
        if m.get("name") == name:
            return m
    return None


def sync_standbys(cluster: dict[str, Any]) -> list[str]:
    """Members Patroni currently counts as synchronous standbys."""
    return [str(m.get("name")) for m in cluster.get("members", []) if m.get("role") in SYNC_ROLES]


def node_states(cluster: dict[str, Any], ports: dict[str, int], live: set[str], host: str) -> list[NodeState]:
    """NodeStates from a GET /cluster answer.

    `ports` maps the nodes provisioned here to their PostgreSQL ports, `live` names those
    whose Patroni process runs. A member whose process is gone is reported stopped even while
    its DCS key has not expired yet; a provisioned node Patroni does not list is stopped.
    """
    result = []
    for m in cluster.get("members", []):
        name = str(m.get("name"))
        role = "primary" if m.get("role") in LEADER_ROLES else "replica"
        state = str(m.get("state", "unknown"))
        alive = name in live or name not in ports
        lag = m.get("lag", 0 if role == "primary" else None)
        result.append(
            NodeState(
                node_id=name,
                role=role,
                state=state if alive else "stopped",
                host=str(m.get("host", host)),
                port=int(m.get("port", ports.get(name, 0))),
                timeline=m.get("timeline"),
                lag_bytes=lag if isinstance(lag, int) else None,
                running=alive and state in RUNNING_STATES,
            )
        )
    listed = {s.node_id for s in result}
    for name, port in ports.items():
        if name not in listed:
            result.append(NodeState(name, "unknown", "stopped", host, port, None, None, False))
    return sorted(result, key=lambda s: s.node_id)


def config_shows(base_url: str, values: dict[str, Any], wait: float = 3.0) -> bool:
    """Whether GET /config shows `values` (waiting up to `wait` for Patroni's cache)."""
    deadline = time.monotonic() + wait
    while True:
        with contextlib.suppress(OSError):
            config = call(base_url, "GET", "/config").body
            if isinstance(config, dict) and all(config.get(k) == v for k, v in values.items()):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def require_ok(resp: Response, what: str) -> None:
    if resp.status >= 300:
        raise EngineError(f"Patroni refused {what} ({resp.status}): {str(resp.body)[:300]}")
