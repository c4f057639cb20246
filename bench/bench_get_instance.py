"""GET /api/v1/postgres/single/{id} through the local gateway with 20 concurrent clients
(goal: p99 <= 50 ms).

Two runs: closed loop (each client sends its next request as soon as the last one answers:
the saturation point of this machine, load generator included) and paced (each client sends
one request every 200 ms, 100 requests/s in all: latency when the stack is not saturated).
Each client keeps one HTTP/1.1 connection; latency is measured per request.
"""

from __future__ import annotations

import http.client
import threading
import time

from _stack import local_stack, summary

CLIENTS = 20
WARMUP_SECONDS = 2
SECONDS = 10
PACED_INTERVAL = 0.2


def client_loop(
    port: int,
    path: str,
    token: str,
    until: float,
    record: list[float],
    warm_until: float,
    interval: float = 0.0,
    phase: float = 0.0,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    next_send = time.perf_counter() + phase
    while time.perf_counter() < until:
        if interval:
            time.sleep(max(0.0, next_send - time.perf_counter()))
            next_send += interval
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        if started > warm_until:
            record.append((time.perf_counter() - started) * 1000)
    conn.close()


def run(port: int, path: str, token: str, interval: float) -> list[float]:
    latencies: list[float] = []
    now = time.perf_counter()
    until, warm = now + WARMUP_SECONDS + SECONDS, now + WARMUP_SECONDS
    threads = [
        # Paced clients are spread over the interval, as independent clients would be.
        threading.Thread(
            target=client_loop,
            args=(port, path, token, until, latencies, warm, interval, i * interval / CLIENTS),
        )
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    with local_stack() as stack:
        token = stack.token("operator", "bench")
        status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "latency"}, token)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], token)
        path = f"/api/v1/postgres/single/{body['id']}"
        for label, interval in (
            ("closed loop", 0.0),
            (f"paced, {CLIENTS / PACED_INTERVAL:.0f} req/s", PACED_INTERVAL),
        ):
            latencies = run(stack.api_port, path, token, interval)
            print(summary(f"GET instance, {CLIENTS} concurrent clients, {label}", latencies, unit="ms"))
            print(f"  throughput: {len(latencies) / SECONDS:.0f} requests/s")
        stack.request("DELETE", path, token=token)


if __name__ == "__main__":
    main()
