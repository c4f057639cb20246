"""GET /api/v1/postgres/single/{id} through the local gateway with 20 concurrent clients
(goal: p99 <= 50 ms). Each client keeps one HTTP/1.1 connection and sends requests back to
back for a fixed duration; latency is measured per request."""

from __future__ import annotations

import http.client
import threading
import time

from _stack import local_stack, summary

CLIENTS = 20
WARMUP_SECONDS = 2
SECONDS = 10


def client_loop(
    port: int, path: str, token: str, until: float, record: list[float], warm_until: float
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    while time.perf_counter() < until:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        if started > warm_until:
            record.append((time.perf_counter() - started) * 1000)
    conn.close()


def main() -> None:
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "latency"}, token)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], token)
        path = f"/api/v1/postgres/single/{body['id']}"
        latencies: list[float] = []
        now = time.perf_counter()
        threads = [
            threading.Thread(
                target=client_loop,
                args=(
                    stack.api_port,
                    path,
                    token,
                    now + WARMUP_SECONDS + SECONDS,
                    latencies,
                    now + WARMUP_SECONDS,
                ),
            )
            for _ in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(summary(f"GET instance, {CLIENTS} concurrent clients", latencies, unit="ms"))
        print(f"throughput: {len(latencies) / SECONDS:.0f} requests/s")
        stack.request("DELETE", path, token=token)


if __name__ == "__main__":
    main()
