"""Data-plane processes are kept apart from the control plane, against real processes and a
real PostgreSQL server of the local engine:
- they never see the control plane's AWS credentials or settings (a scrubbed environment);
- a command that times out is killed with everything it started (its process group), not
  only the runuser in front of it;
- a tenant's final dump is encrypted on disk like the backup repository, and restores.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import logical_dump, process
from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.restore_host import LocalRestoreHost
from pgfleet.core.errors import EngineError
from pgfleet.ports.database_admin import DATABASE_PER_TENANT, TenantSpec
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home, wait_for

pytestmark = pytest.mark.skipif(not local_pg.installed_binaries(), reason="no PostgreSQL binaries installed")

SERVER = "pgi-hygiene"
PASSPHRASE = "hygiene-passphrase-0123456789-abcdefgh"
# What a control plane holds in its environment (in AWS, the Lambda role's credentials).
CONTROL_PLANE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAHYGIENETEST00001",
    "AWS_SECRET_ACCESS_KEY": "hygiene-secret-access-key-must-not-leak",
    "AWS_SESSION_TOKEN": "hygiene-session-token-must-not-leak",
    "PGFLEET_JWT_AUDIENCE": "hygiene-audience",
}
TENANT = TenantSpec(
    name="tenant-x", mode=DATABASE_PER_TENANT, database="tenant_x", schema=None, login="tenant_x_user",
    owner="pgfleet_t_tenant_x_owner", writer="pgfleet_t_tenant_x_writer", reader="pgfleet_t_tenant_x_reader",
    max_connections=None,
)  # fmt: skip
TENANT_PASSWORD = secrets.token_urlsafe(16)


class Rig:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.engine = LocalPostgresEngine(home / "data")
        dead_etcd = "http://127.0.0.1:9"  # no cluster here
        self.host = LocalRestoreHost(
            home, self.engine, LocalPatroniEngine(home / "data", dead_etcd), dead_etcd
        )
        self.spec = ServerSpec(server_id=SERVER, version="15", port=free_port(), memory_mb=256)
        self.location = self.host.server_location(SERVER, self.spec.port)

    def tenant_sql(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            host="127.0.0.1", port=self.spec.port, user=TENANT.login, password=TENANT_PASSWORD,
            dbname=TENANT.database, connect_timeout=5, autocommit=True,
        ) as conn:  # fmt: skip
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    saved = {name: os.environ.get(name) for name in CONTROL_PLANE_ENV}
    os.environ.update(CONTROL_PLANE_ENV)
    try:
        with scratch_home("pgfleet-hyg-") as home:
            rig = Rig(home)
            rig.engine.provision(rig.spec)
            rig.engine.start(rig.spec)  # the postmaster starts under this environment
            try:
                yield rig
            finally:
                rig.engine.destroy(SERVER)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _leaks(text: str) -> list[str]:
    return [v for v in CONTROL_PLANE_ENV.values() if v in text] + (["AWS_"] if "AWS_" in text else [])


def test_a_data_plane_command_sees_no_control_plane_credentials(rig: Rig) -> None:
    seen = process.run(["/usr/bin/env"]).stdout
    assert "PATH=" in seen and _leaks(seen) == [], seen
    assert process.run(["/usr/bin/env"], env={"PGPASSWORD": "given"}).stdout.count("PGPASSWORD=given") == 1


def test_the_postmaster_and_its_backends_see_no_control_plane_credentials(rig: Rig) -> None:
    pid = rig.engine.state(SERVER).pid
    assert pid is not None
    environ = _environ_of(pid)
    assert environ and not [
        name for name in environ if name.startswith("AWS_") or name.startswith("PGFLEET_")
    ]
    assert _leaks(Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")) == []


def test_both_ends_of_a_dump_pipe_get_a_clean_environment(rig: Rig) -> None:
    out_dir = process.make_owned_dir(rig.home / "pipe-out")
    out = out_dir / "env.txt"
    logical_dump.pipe(
        ["/usr/bin/env"], ["/bin/sh", "-c", 'cat > "$0"; echo "--- consumer" >> "$0"; env >> "$0"', str(out)], PASSPHRASE, "env pipe"
    )  # fmt: skip
    producer, _, consumer = out.read_text().partition("--- consumer")
    assert "PATH=" in producer and _leaks(producer) == [] and PASSPHRASE not in producer
    assert _leaks(consumer) == [] and f"{logical_dump.PASSPHRASE_ENV}={PASSPHRASE}" in consumer


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_a_timed_out_command_is_killed_with_its_children(rig: Rig) -> None:
    # sleep takes fractional seconds: unique arguments find exactly these processes.
    child, grandchild = (f"{3000 + n}.{secrets.randbelow(10**6):06d}" for n in (1, 2))
    started = time.monotonic()
    with pytest.raises(EngineError, match="timed out after 1s"):
        process.run(["/bin/sh", "-c", f"sleep {grandchild} & sleep {child}; wait"], timeout=1)
    assert time.monotonic() - started < 10
    wait_for(lambda: not _processes_with(grandchild) and not _processes_with(child), 5, what="children gone")


def test_a_timed_out_dump_pipe_is_killed_on_both_sides(rig: Rig) -> None:
    markers = [f"{3010 + n}.{secrets.randbelow(10**6):06d}" for n in range(3)]
    producer = ["/bin/sh", "-c", f"sleep {markers[0]} & sleep {markers[1]}"]
    consumer = ["/bin/sh", "-c", f"cat > /dev/null; sleep {markers[2]}"]
    with pytest.raises(EngineError, match="timed out"):
        logical_dump.pipe(producer, consumer, PASSPHRASE, "stuck dump", timeout=1)
    wait_for(lambda: not any(_processes_with(m) for m in markers), 5, what="both sides gone")


def test_a_tenant_dump_is_encrypted_on_disk_and_restores(rig: Rig) -> None:
    admin = rig.engine.database_admin(SERVER)
    admin.create_tenant(TENANT, TENANT_PASSWORD)
    rig.tenant_sql("CREATE TABLE customer_secrets (id int, note text)")
    rig.tenant_sql(
        "INSERT INTO customer_secrets SELECT g, 'hygiene-private-note-' || g FROM generate_series(1, 500) g"
    )
    dump = admin.dump_tenant(TENANT, "bkp-hygiene0001", PASSPHRASE)
    content = dump.path.read_bytes()
    assert dump.size_bytes == len(content) > 0
    for plaintext in (b"PGDMP", b"CREATE TABLE", b"customer_secrets", b"hygiene-private-note"):
        assert plaintext not in content, plaintext
    assert not list(dump.path.parent.glob("*.partial"))
    # It restores (decrypted with the same passphrase) over a database that lost its rows.
    rig.tenant_sql("DELETE FROM customer_secrets WHERE id > 10")
    reason = rig.host.restore_database(
        rig.location, TENANT.database, dump.path, PASSPHRASE, owner=TENANT.owner
    )
    assert "restored" in reason, reason
    assert rig.tenant_sql("SELECT count(*), max(note) FROM customer_secrets") == [
        (500, "hygiene-private-note-99")
    ]
    with pytest.raises(EngineError):
        rig.host.restore_database(rig.location, TENANT.database, dump.path, "wrong-" + PASSPHRASE)
