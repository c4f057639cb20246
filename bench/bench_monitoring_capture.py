"""Metric capture (monitoring). Goal: one capture of 50 running servers within 10 s.

The servers are real instances created through the API of a local stack (as bench_locks does,
with its helpers); the capture then runs in this process on the stack's own ports (moto's
DynamoDB for metadata and history, the local engine's SQL seam), exactly as the scheduled
handler runs it: `capture.scheduled_capture`, five times, each storing 50 samples.

`--servers N` sets the fleet size (default 50).
"""

from __future__ import annotations

import argparse
import os
import time

from _stack import local_stack, summary
from bench_locks import LIMITS, _create


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, value in LIMITS.items():
        os.environ.setdefault(f"PGFLEET_TENANT_MAX_{name}", str(value))
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        started = time.perf_counter()
        created = [_create(stack, token, f"mon-{i}") for i in range(args.servers)]
        for body in created:
            stack.wait_operation(body["operation_id"], token, timeout=900)
        print(f"created {len(created)} instances in {time.perf_counter() - started:.0f} s")

        # this process on the stack's ports, as its scheduled handler
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith(("PGFLEET_", "AWS_"))})
        from pgfleet.core.context import provide
        from pgfleet.domains import servers
        from pgfleet.domains.monitoring import capture
        from pgfleet.handlers import domains
        from pgfleet.wiring import dependencies

        provide(dependencies)
        domains.install()
        ports = dependencies()
        fleet = [s for s in servers.all_servers(ports, "bench") if capture.sampled(s)]
        assert len(fleet) == args.servers, f"{len(fleet)} servers sampled"
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            samples = capture.capture(ports, fleet)
            times.append(time.perf_counter() - t0)
            up = sum(1 for s in samples if s.data["up"])
            assert up == args.servers, [s.data["error"] for s in samples if not s.data["up"]][:3]
            time.sleep(1)
        rated = sum(1 for s in samples if s.data["commits_per_second"] is not None)
        print(summary(f"capture of {args.servers} servers (store included)", times) + " (goal <= 10 s)")
        print(
            f"last round: {up} up, {rated} with rates, resource source {samples[0].data['resource_source']}"
        )
        # where a round's time goes, each part alone over the 50 servers, one at a time
        from datetime import UTC, datetime

        from pgfleet.domains import archive

        now = datetime.now(UTC)
        parts = {
            "previous sample (history)": lambda s: capture.previous_sample(ports, s.id, now),
            "last backup (metadata)": lambda s: archive.records.latest_completed(ports, s.id),
            "SQL + processes": lambda s: capture._read(ports, s, None),
        }
        for name, part in parts.items():
            t0 = time.perf_counter()
            for server in fleet:
                part(server)
            print(f"  {name}: {(time.perf_counter() - t0) / len(fleet) * 1000:.1f} ms a server, sequentially")
        t0 = time.perf_counter()
        ports.history.append("metrics", [capture.record_of(s) for s in samples])
        print(f"  storing {len(samples)} samples: {(time.perf_counter() - t0) * 1000:.0f} ms")
        for body in created:
            stack.request("DELETE", f"/api/v1/postgres/single/{body['id']}", token=token)


if __name__ == "__main__":
    main()
