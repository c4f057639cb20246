"""Create -> accepting connections, over 20 creates (goal: p50 <= 1.5 s, p95 <= 3 s).

Each create is timed from the POST until psycopg connects with the returned URI; creates run
one after another, and the instances are deleted at the end.
"""

from __future__ import annotations

import time

import psycopg
from _stack import local_stack, summary

CREATES = 20


def main() -> None:
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        # Warm-up: the first create also builds the version's template data directory.
        status, warm = stack.request("POST", "/api/v1/postgres/single", {"name": "warm-up"}, token)
        assert status == 202, warm
        stack.wait_operation(warm["operation_id"], token)
        times, ids = [], [warm["id"]]
        for i in range(CREATES):
            started = time.perf_counter()
            status, body = stack.request("POST", "/api/v1/postgres/single", {"name": f"bench-{i:02d}"}, token)
            assert status == 202, body
            while True:
                try:
                    psycopg.connect(body["credentials"]["uri"], connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    time.sleep(0.01)
            times.append(time.perf_counter() - started)
            ids.append(body["id"])
        print(summary("create -> accepting connections", times))
        for iid in ids:
            stack.request("DELETE", f"/api/v1/postgres/single/{iid}", token=token)


if __name__ == "__main__":
    main()
