"""`make up` never stops a process it did not start: no `service ... stop` (which stops every
etcd on the machine), no `pg_ctlcluster ... stop` (the user's own Debian cluster), nothing
killed by name. When it installs Debian packages itself, it keeps their services from starting
instead (policy-rc.d during the install, `systemctl disable` of what it installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pgfleet.core.settings import ETCD_PEER_PORT, ETCD_PORT

REPO = Path(__file__).resolve().parents[2]
# Ways a shell command stops or kills a process pgfleet may not own.
STOPS = re.compile(
    r"\bservice\s+\S+\s+(stop|restart)|\bsystemctl\s+(stop|kill|restart)|--now\b|\bpg_ctlcluster\b"
    r"|\bpg_ctl\b[^\n]*\bstop\b|\bpkill\b|\bkillall\b|\bkill\s|\binvoke-rc\.d\s+\S+\s+stop"
)
# Ports of the Debian services a user may run by hand: etcd (client, peer), PostgreSQL, PgBouncer.
DEBIAN_PORTS = {2379, 2380, 5432, 6432}


def test_the_makefile_never_stops_a_service_or_a_server() -> None:
    text = (REPO / "Makefile").read_text()
    assert STOPS.search(text) is None, STOPS.search(text)
    # What it does instead, only around its own install.
    assert "policy-rc.d" in text and "systemctl disable" in text


def _dry_run(tmp_path: Path, *args: str) -> str:
    """What make would run (`make -n`: nothing is executed), as root would see it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        ["make", "-n", "-s", "-C", str(REPO), f"VENV={tmp_path / 'venv'}", f"PGFLEET_HOME={tmp_path}", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return proc.stdout


def test_make_up_stops_nothing_even_when_it_installs_packages(tmp_path: Path) -> None:
    # A machine missing a binary: the install path is part of the plan.
    plan = _dry_run(tmp_path, "up", "REQUIRED_BINARIES=/nonexistent/postgres")
    assert "apt-get install" in plan and "pgfleet up" in plan
    assert STOPS.search(plan) is None, STOPS.search(plan)
    down = _dry_run(tmp_path, "down")
    assert STOPS.search(down) is None and "pgfleet down" in down


def test_the_install_step_is_valid_shell(tmp_path: Path) -> None:
    script = _dry_run(tmp_path, "system-packages", "REQUIRED_BINARIES=/nonexistent/postgres")
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # Nothing to install: the step ends at once, whoever runs it.
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "system-packages", "REQUIRED_BINARIES=/bin/sh"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == "", done


def test_the_local_stack_listens_on_ports_of_its_own() -> None:
    from pgfleet.core import port_allocation

    assert {ETCD_PORT, ETCD_PEER_PORT}.isdisjoint(DEBIAN_PORTS)
    assert DEBIAN_PORTS.isdisjoint(port_allocation.PORT_RANGE)


def test_a_node_of_an_older_home_is_pointed_at_the_local_etcd_before_it_starts() -> None:
    import yaml

    from pgfleet.adapters.engines.local import patroni_config as cfg

    endpoint = f"http://127.0.0.1:{ETCD_PORT}"
    old = cfg.dump({"scope": "pgc-1", "etcd3": {"hosts": ["127.0.0.1:2379"], "protocol": "http"}, "ttl": 20})
    moved = cfg.with_etcd(old, endpoint)
    assert moved is not None
    assert yaml.safe_load(moved) == {
        "scope": "pgc-1", "etcd3": {"hosts": [f"127.0.0.1:{ETCD_PORT}"], "protocol": "http"}, "ttl": 20,
    }  # fmt: skip
    assert cfg.with_etcd(moved, endpoint) is None  # already there: the file is left alone
