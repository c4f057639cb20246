"""CVE match speed: 50 synthetic servers (every supported major, minors from .0 to past the
latest fix, a few extensions, PgBouncer versions old and new) matched against the shipped
dataset, repeated. Goal: a match of 50 servers in at most 1 s. Prints its figures; never a
timed test. No local stack: the match is pure computation over what a scan has read."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "functions")]

from bench._stack import summary  # noqa: E402

from pgfleet.domains.security import cves  # noqa: E402
from pgfleet.domains.security.cves import ServerComponents  # noqa: E402

ROUNDS = 200


def fleet(n: int = 50) -> list[ServerComponents]:
    majors = (14, 15, 16, 17, 18)
    servers = []
    for i in range(n):
        major, minor = majors[i % len(majors)], i % 24
        extensions = {
            "plpgsql": "1.0",
            **({"refint": "1.0"} if i % 3 == 0 else {}),
            **({"pgcrypto": "1.3"} if i % 2 else {}),
        }
        tools = {
            "pgbackrest": "2.45",
            "pgbouncer": "1.18.0" if i % 2 else "1.25.2",
            **({"patroni": "4.1.5"} if i % 4 == 0 else {}),
        }
        servers.append(
            ServerComponents(
                f"pgi-{i:012x}", "acme", major * 10000 + minor, f"{major}.{minor}", extensions, tools
            )
        )
    return servers


def main() -> None:
    dataset = cves.load(Path("/nonexistent"))  # the shipped dataset
    servers = fleet()
    timings: list[float] = []
    findings = 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        findings = sum(len(cves.match(dataset, s)) for s in servers)
        timings.append(time.perf_counter() - start)
    print(f"dataset: {len(dataset.cves)} CVEs (retrieved {dataset.retrieved}); fleet: {len(servers)} servers; "
          f"{findings} findings per match")  # fmt: skip
    print(summary("match of 50 servers", timings))
    worst = max(timings)
    print(f"goal <= 1 s for 50 servers: {'met' if worst <= 1.0 else 'MISSED'} (worst {worst * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
