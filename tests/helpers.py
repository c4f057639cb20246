"""Shared helpers for tests that drive real processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def scratch_home(prefix: str = "pgfleet-test-") -> Iterator[Path]:
    """A PGFLEET_HOME the postgres user can reach. Not under pytest's tmp_path: a second pytest
    session on the machine resets /tmp/pytest-of-<user> to 0700 and would cut servers off."""
    from pgfleet.core.settings import get_settings

    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o755)
    # Engines made on this home (integration tests) keep their CA in home/tls: the URIs the
    # domains build verify against it. A stack's own engine lives in home/data (LocalStack).
    before = os.environ.get("PGFLEET_TLS_ROOT_CERT")
    os.environ["PGFLEET_TLS_ROOT_CERT"] = str(home / "tls" / "ca.crt")
    get_settings.cache_clear()
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("PGFLEET_TLS_ROOT_CERT", None)
        else:
            os.environ["PGFLEET_TLS_ROOT_CERT"] = before
        get_settings.cache_clear()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def running_stack(prefix: str = "pgfleet-test-") -> Iterator[LocalStack]:
    """A local stack in a scratch home, stopped (and removed) however the block ends."""
    with scratch_home(prefix) as home:
        stack = LocalStack(home)
        try:
            stack.up()
            yield stack
        finally:
            stack.down()


class LocalStack:
    """A pgfleet local stack in its own PGFLEET_HOME and ports, driven through the CLI."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.api_port = free_port()
        self.aws_port = free_port()
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.ws_port = free_port()
        self.env = {
            **os.environ,
            "PGFLEET_HOME": str(home),
            "PGFLEET_API_PORT": str(self.api_port),
            "PGFLEET_AWS_PORT": str(self.aws_port),
            "PGFLEET_ETCD_PORT": str(self.etcd_port),
            "PGFLEET_ETCD_PEER_PORT": str(self.etcd_peer_port),
            "PGFLEET_WS_PORT": str(self.ws_port),
            "PYTHONPATH": str(REPO / "functions"),
            # Tests poll far faster than a person: limits that polling never reaches, except
            # where a test sets the seed's (tests/e2e/test_api_platform_stack.py).
            "PGFLEET_RATE_LIMITS": os.environ.get(
                "PGFLEET_RATE_LIMITS", "standard=1000000/100000,premium=1000000/100000,system=1000000/100000"
            ),
        }
        self.env.pop("AWS_ENDPOINT_URL", None)
        self.env.pop("PGFLEET_TLS_ROOT_CERT", None)  # the stack's engine keeps its CA in home/data/tls

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def cli(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pgfleet.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"pgfleet {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def up(self) -> str:
        return self.cli("up")

    def down(self) -> str:
        return self.cli("down")

    def token(self, role: str, tenant: str | None = "acme") -> str:
        """A token confined to `tenant`; tenant=None with role admin: a platform token."""
        return self.cli("token", "--role", role, *(("--tenant", tenant) if tenant else ())).strip()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def wait_operation_any(self, op_id: str, token: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the operation ends, however it ends."""

        def done() -> dict[str, Any] | None:
            _, op = self.request("GET", f"/api/v1/operations/{op_id}", token=token)
            return op if op.get("status") in ("succeeded", "failed") else None

        return wait_for(done, timeout, what=f"operation {op_id}")  # type: ignore[no-any-return]

    def wait_operation(self, op_id: str, token: str, timeout: float = 90) -> dict[str, Any]:
        op = self.wait_operation_any(op_id, token, timeout)
        assert op["status"] == "succeeded", op
        return op

    def wait_created(self, op_id: str, token: str, timeout: float = 180) -> dict[str, Any]:
        """The create operation, polled closely: returned as soon as it has succeeded."""
        op: dict[str, Any] = wait_for(
            lambda: (got := self.request("GET", f"/api/v1/operations/{op_id}", token=token)[1])["status"]
            in ("succeeded", "failed") and got,
            timeout, interval=0.02, what=f"operation {op_id}",
        )  # fmt: skip
        assert op["status"] == "succeeded", op
        return op

    def wait_first_backup(self, path: str, token: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the instance or cluster at `path` has completed its first backup (it runs
        as its own operation once the resource is running); returns the resource."""

        def done() -> dict[str, Any] | None:
            _, got = self.request("GET", path, token=token)
            assert got.get("backup_status") != "failed", got
            return got if got.get("backup_status") == "completed" else None

        return wait_for(done, timeout, interval=0.2, what=f"the first backup of {path}")  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def worker_held(self) -> Iterator[None]:
        """Freeze the runtime (worker loop and ticker) for the block: queued operations wait,
        the gateway answers. What a worker already runs in a child process goes on."""
        pid = int((self.home / "run" / "runtime.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
