"""Maintenance reports (maintenance.reports.build). Goal: a PDF over 1,000 executions in <= 5 s.

The input is SYNTHETIC: 1,000 execution records shaped as the maintenance domain stores them
(snake_case), with values derived from their index (no randomness, the same every run): 30
days of executions, a failure every 13th (with a long error message to cut), every 10th an
optimization with three results, a few without resource usage or without space reclaimed.
Every report type is built in every format `--rounds` times (default 5), in this process with
nothing else to do: p50 and max seconds, and the size of the body.

Run: PYTHONPATH=functions .venv/bin/python bench/bench_maintenance_report.py [--executions N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from pgfleet.domains.maintenance import reports  # noqa: E402

START = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
END = START + timedelta(days=30)
TASK_TYPES = ("VACUUM", "ANALYZE", "REINDEX", "CLEANUP", "BACKUP", "OPTIMIZE")
GOAL_PDF_SECONDS = 5.0


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def synthetic_execution(i: int, count: int) -> dict[str, Any]:
    """Synthetic benchmark input: execution record number `i` of `count`, spread over 30 days."""
    started = START + timedelta(seconds=i * (30 * 86400 // count))
    duration = 5.0 + (i * 37) % 600 / 3
    failed = i % 13 == 0
    optimization = i % 10 == 0
    record: dict[str, Any] = {
        "id": f"mex-{i:012x}",
        "task_id": f"mtk-{i % 40:012x}",
        "task_name": f"synthetic task {i % 40} on the orders database, bloated tables first",
        "task_type": "OPTIMIZE" if optimization else TASK_TYPES[i % 5],
        "kind": "optimization" if optimization else "task",
        "status": "FAILED" if failed else ("RUNNING" if i == count - 1 else "COMPLETED"),
        "target_id": f"pgi-{i % 8:012x}",
        "tenant_id": "bench",
        "start_time": _iso(started),
        "end_time": None if i == count - 1 else _iso(started + timedelta(seconds=duration)),
        "duration": None if i == count - 1 else duration,
        "rows_affected": i * 17 % 100_000,
        "space_reclaimed": None if i % 7 == 0 else (i * 7919 % 512) * 1024 * 1024,
        "performance_impact": None if i % 11 == 0 else (i * 13) % 1000 / 10,
        "resource_usage": {}
        if i % 11 == 0
        else {
            "cpu_usage_percent": 5 + (i * 3) % 90,
            "memory_usage_mb": 64 + i % 512,
            "disk_io_mb": (i * 29) % 2048 / 4,
            "peak_values": {
                "cpu": 10 + (i * 3) % 90,
                "memory": 128 + i % 512,
                "disk_io": (i * 31) % 4096 / 4,
            },
        },
        "error_message": (
            f"canceling statement due to statement timeout while vacuuming public.orders_{i} "
            "(the lock on the relation was held by another session for longer than the task allows)"
        )
        if failed
        else None,
    }
    if optimization:
        record["optimizations"] = [
            {
                "type": kind,
                "objects_processed": (i + n) % 25,
                "space_reclaimed_mb": round((i * (n + 3)) % 900 / 7, 2),
                "performance_improvement_percent": None if kind == "VACUUM" else (i + n) % 40 / 2,
                "duration": duration / 3,
                "status": "FAILED" if failed and n == 2 else "COMPLETED",
                "details": f"{kind} of {(i + n) % 25} objects in the orders database",
            }
            for n, kind in enumerate(("VACUUM", "ANALYZE", "REINDEX"))
        ]
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    executions = [synthetic_execution(i, args.executions) for i in range(args.executions)]
    print(
        f"{len(executions):,} synthetic executions over {START:%Y-%m-%d} to {END:%Y-%m-%d}, {args.rounds} rounds"
    )
    worst_pdf = 0.0
    for report_type in reports.REPORT_TYPES:
        for fmt in reports.FORMATS:
            times, size = [], 0
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                report = reports.build(report_type, fmt, executions, START, END)
                times.append(time.perf_counter() - t0)
                size = len(report.body)
            if fmt == "PDF":
                worst_pdf = max(worst_pdf, max(times))
                assert report.body.startswith(b"%PDF"), "not a PDF"
            print(
                f"{report_type:<21} {fmt:<4} p50={statistics.median(times):.3f}s max={max(times):.3f}s "
                f"size={size / 1024:,.1f} KiB"
            )
    verdict = "met" if worst_pdf <= GOAL_PDF_SECONDS else "MISSED"
    print(
        f"slowest PDF: {worst_pdf:.3f}s (goal <= {GOAL_PDF_SECONDS:.0f} s over 1,000 executions: {verdict})"
    )


if __name__ == "__main__":
    main()
