"""Cold import of the api handler module in a fresh interpreter (goal: <= 500 ms)."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
PROBE = (
    "import time, sys; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); "
    "import pgfleet.handlers.api; print((time.perf_counter() - t) * 1000)"
)


def main() -> None:
    runs = [
        float(subprocess.check_output([sys.executable, "-c", PROBE, str(FUNCTIONS)], text=True))
        for _ in range(7)
    ]
    print(
        f"import pgfleet.handlers.api: n={len(runs)} min={min(runs):.0f}ms "
        f"median={statistics.median(runs):.0f}ms max={max(runs):.0f}ms"
    )


if __name__ == "__main__":
    main()
