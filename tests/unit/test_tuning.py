"""Settings derived from memory and CPU."""

from __future__ import annotations

import pytest

from pgfleet.adapters.engines.local import tuning


def mb(value: str) -> int:
    assert value.endswith("MB"), value
    return int(value[:-2])


def kb(value: str) -> int:
    assert value.endswith("kB"), value
    return int(value[:-2])


def test_one_gigabyte_one_cpu() -> None:
    settings = tuning.settings_for(1024, 1)
    assert settings["shared_buffers"] == "256MB"
    assert settings["effective_cache_size"] == "768MB"
    assert settings["maintenance_work_mem"] == "64MB"
    assert settings["max_connections"] == "102"
    assert settings["max_parallel_workers"] == "1"
    # A single core gets no parallel plans.
    assert settings["max_parallel_workers_per_gather"] == "0"
    assert settings["max_worker_processes"] == "8"


@pytest.mark.parametrize("memory_mb", [64, 256, 1024, 4096, 16384, 65536])
def test_memory_shares(memory_mb: int) -> None:
    settings = tuning.settings_for(memory_mb, 2)
    assert mb(settings["shared_buffers"]) == memory_mb // 4
    assert mb(settings["effective_cache_size"]) == memory_mb * 3 // 4
    connections = int(settings["max_connections"])
    # Every connection running a few work_mem nodes still fits beside shared_buffers.
    work_mem_total_mb = kb(settings["work_mem"]) * connections * 3 / 1024
    assert work_mem_total_mb <= memory_mb - memory_mb // 4 or kb(settings["work_mem"]) == 1024
    assert 1024 <= kb(settings["work_mem"]) <= 256 * 1024
    assert 16 <= mb(settings["maintenance_work_mem"]) <= 2048


@pytest.mark.parametrize(
    ("memory_mb", "expected"),
    [(64, 20), (200, 20), (250, 25), (1024, 102), (5000, 500), (100_000, 500)],
)
def test_max_connections_scale_with_memory_within_bounds(memory_mb: int, expected: int) -> None:
    assert tuning.settings_for(memory_mb, 1)["max_connections"] == str(expected)


@pytest.mark.parametrize(
    ("cpu", "workers", "per_gather", "worker_processes"),
    [(0.25, 1, 0, 8), (1, 1, 0, 8), (1.5, 2, 1, 8), (4, 4, 2, 8), (16, 16, 4, 16)],
)
def test_parallelism_follows_cpu(cpu: float, workers: int, per_gather: int, worker_processes: int) -> None:
    settings = tuning.settings_for(2048, cpu)
    assert settings["max_parallel_workers"] == str(workers)
    assert settings["max_parallel_workers_per_gather"] == str(per_gather)
    assert settings["max_parallel_maintenance_workers"] == str(per_gather)
    assert settings["max_worker_processes"] == str(worker_processes)
    # PostgreSQL caps parallel workers at the worker-process slots.
    assert int(settings["max_parallel_workers"]) <= int(settings["max_worker_processes"])


def test_tiny_memory_still_gives_valid_values() -> None:
    settings = tuning.settings_for(8, 1)
    assert mb(settings["shared_buffers"]) >= 16
    assert int(settings["max_connections"]) == 20


@pytest.mark.parametrize(("memory_mb", "cpu"), [(0, 1), (-1, 1), (1024, 0), (1024, -2)])
def test_rejects_non_positive_allowances(memory_mb: int, cpu: float) -> None:
    with pytest.raises(ValueError):
        tuning.settings_for(memory_mb, cpu)


def test_is_pure() -> None:
    assert tuning.settings_for(2048, 2) == tuning.settings_for(2048, 2)
    assert all(isinstance(value, str) for value in tuning.settings_for(2048, 2).values())
