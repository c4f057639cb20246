"""cgroup v1 limits against a directory laid out like the hierarchy (no kernel involved)."""

from __future__ import annotations

from pathlib import Path

from pgfleet.adapters.engines.local.cgroups import CgroupLimits
from pgfleet.adapters.engines.local.database_admin import frozen_owner, pg_dump_argv


def _hierarchy(root: Path) -> Path:
    for controller in ("memory", "cpu"):
        (root / controller).mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")
    return root


def test_place_writes_limits_and_moves_the_postmaster_first(tmp_path: Path) -> None:
    limits = CgroupLimits(_hierarchy(tmp_path), enabled=True)
    outcome = limits.place("pgi-0123456789ab", 512, 2, [4242])
    assert outcome.enforced and "cgroup v1" in outcome.reason
    memory = tmp_path / "memory" / "pgfleet" / "pgi-0123456789ab"
    cpu = tmp_path / "cpu" / "pgfleet" / "pgi-0123456789ab"
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "200000"
    assert limits.pids("memory", "pgi-0123456789ab") == [4242]
    assert limits.memory_limit_bytes("pgi-0123456789ab") == 512 * 2**20
    # resize: the same group, new values
    limits.place("pgi-0123456789ab", 1024, 1, [])
    assert limits.memory_limit_bytes("pgi-0123456789ab") == 1024 * 2**20
    assert (cpu / "cpu.cfs_quota_us").read_text() == "100000"


def test_hosts_without_cgroups_fall_back_to_settings_and_say_so(tmp_path: Path) -> None:
    outcome = CgroupLimits(tmp_path / "nothing", enabled=True).place("srv", 256, 1, [1])
    assert not outcome.enforced and "settings only" in outcome.reason and "no cgroup v1" in outcome.reason
    off = CgroupLimits(_hierarchy(tmp_path), enabled=False).place("srv", 256, 1, [1])
    assert not off.enforced and "PGFLEET_CGROUPS=off" in off.reason
    assert not (tmp_path / "memory" / "pgfleet" / "srv").exists()


def test_invalid_names_never_reach_the_filesystem(tmp_path: Path) -> None:
    limits = CgroupLimits(_hierarchy(tmp_path), enabled=True)
    for name in ("../escape", "a/b", "", ".hidden"):
        try:
            limits.directory("memory", name)
        except ValueError:
            continue
        raise AssertionError(f"{name!r} accepted")


def test_frozen_owner_names_fit_and_dump_argv_names_exactly_one_schema() -> None:
    assert len(frozen_owner("x" * 63)) <= 63 and frozen_owner("a") != frozen_owner("b")
    argv = pg_dump_argv(Path("/bin"), Path("/s"), 5432, "app", "tenant_a", Path("/d/x.dump"))
    assert argv[argv.index("-n") + 1] == "tenant_a" and argv[argv.index("-d") + 1] == "app"
    assert "-n" not in pg_dump_argv(Path("/bin"), Path("/s"), 5432, "tenant_a", None, Path("/d/x.dump"))
