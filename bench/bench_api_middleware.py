"""What the API middleware costs (goal: at most 5 ms p50 added to a GET through the gateway),
and latency at the seed's load (goal: 20 concurrent clients at 1,000 requests/minute, p99 <=
50 ms, no errors other than intended 429s).

One run, two stacks one after the other: the middleware off (`PGFLEET_API_MIDDLEWARE=off`:
authentication only) and on (authentication, the rate-limit counter update, Prometheus
counters, the audit event and the API-metrics record: one DynamoDB update and one batch write
per request), each serving the same GET of one instance to one client, one request at a time.
Then, middleware on and the seed's rate limits (standard plan), 20 clients each with its own token send 1,000
requests a minute in all for 60 s.
"""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time

from _stack import local_stack, percentile, summary

SEQUENTIAL = 600
WARMUP = 50
CLIENTS = 20
PER_MINUTE = 1000
PACED_SECONDS = 60


def _sequential(port: int, path: str, token: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    latencies = []
    for i in range(WARMUP + SEQUENTIAL):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        if i >= WARMUP:
            latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    return latencies


def _paced(port: int, path: str, tokens: list[str]) -> tuple[list[float], dict[int, int]]:
    interval = 60.0 * CLIENTS / PER_MINUTE  # seconds between two requests of one client
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    until = start + PACED_SECONDS

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {tokens[index]}"}
        next_send = start + index * interval / CLIENTS  # spread over the interval
        while next_send < until:
            time.sleep(max(0.0, next_send - time.perf_counter()))
            next_send += interval
            sent = time.perf_counter()
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            with lock:
                latencies.append((time.perf_counter() - sent) * 1000)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def _measure(middleware: str) -> dict[str, object]:
    os.environ["PGFLEET_API_MIDDLEWARE"] = middleware
    # The seed's limits for standard tokens (the paced clients); the one sequential reader is on
    # a system plan raised out of its way (its counter is updated all the same).
    os.environ["PGFLEET_RATE_LIMITS"] = "system=1000000/100000"
    from pgfleet.core.auth import LocalTokens

    with local_stack() as stack:
        mint = LocalTokens(stack.home).mint
        token = mint("operator", "bench", sub="bench-creator")
        status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "latency"}, token)
        assert status == 202, body
        stack.wait_operation(
            body["operation_id"], mint("operator", "bench", sub="bench-poller", plan="system")
        )
        path = f"/api/v1/postgres/single/{body['id']}"
        reader = mint("viewer", "bench", sub="bench-reader", plan="system")
        result: dict[str, object] = {"sequential": _sequential(stack.api_port, path, reader)}
        if middleware == "on":
            tokens = [mint("viewer", "bench", sub=f"client-{i}") for i in range(CLIENTS)]
            result["paced"] = _paced(stack.api_port, path, tokens)
        stack.request("DELETE", path, token=token)
        return result


def main() -> None:
    off = _measure("off")
    on = _measure("on")
    seq_off, seq_on = off["sequential"], on["sequential"]
    assert isinstance(seq_off, list) and isinstance(seq_on, list)
    print(summary("GET instance, one client, middleware off", seq_off, unit="ms"))
    print(summary("GET instance, one client, middleware on", seq_on, unit="ms"))
    added = statistics.median(seq_on) - statistics.median(seq_off)
    print(f"middleware adds {added:.2f} ms p50 (goal <= 5 ms)")
    latencies, statuses = on["paced"]  # type: ignore[misc]
    print(summary(f"GET instance, {CLIENTS} clients at {PER_MINUTE} requests/minute", latencies, unit="ms"))
    errors = sum(n for status, n in statuses.items() if status not in (200, 429))
    print(
        f"  p99 {percentile(latencies, 99):.1f} ms (goal <= 50 ms); {len(latencies)} requests in "
        f"{PACED_SECONDS} s; statuses {dict(sorted(statuses.items()))}; errors other than 429: {errors}"
    )


if __name__ == "__main__":
    main()
