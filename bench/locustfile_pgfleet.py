"""Locust users for bench/bench_load_locust.py (run there as `locust --headless` in a process of
its own: gevent's monkeypatching stays out of the stack helpers).

Each user is one API client with a token of its own (the rate limiter counts per token) and
one keep-alive connection, sending GET of an instance, GET of the list, GET of an operation and
GET /api/health (chosen at random, equal weights). PGFLEET_LOCUST_DATA names a JSON file: {"instance", "operation",
"tokens": [one per user]}; PGFLEET_LOCUST_RATE is each user's requests/s (0: the next request
as soon as the last one answers). A 429 is recorded as a failure "429 rate limited", which the
driver counts apart from errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, task

DATA = json.loads(Path(os.environ["PGFLEET_LOCUST_DATA"]).read_text())
RATE = float(os.environ.get("PGFLEET_LOCUST_RATE", "0"))
_tokens = iter(DATA["tokens"])  # users start one after another in one gevent loop


class ApiClient(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE else constant(0)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {next(_tokens)}"}

    def _get(self, path: str, name: str, auth: bool = True) -> None:
        with self.client.get(path, headers=self.auth if auth else {}, name=name, catch_response=True) as resp:
            if resp.status_code == 200:
                resp.success()
            elif resp.status_code == 429:
                resp.failure("429 rate limited")
            else:
                resp.failure(f"HTTP {resp.status_code}")

    @task
    def get_instance(self) -> None:
        self._get(f"/api/v1/postgres/single/{DATA['instance']}", "GET /api/v1/postgres/single/{id}")

    @task
    def list_instances(self) -> None:
        self._get("/api/v1/postgres/single", "GET /api/v1/postgres/single")

    @task
    def get_operation(self) -> None:
        self._get(f"/api/v1/operations/{DATA['operation']}", "GET /api/v1/operations/{id}")

    @task
    def health(self) -> None:
        self._get("/api/health", "GET /api/health", auth=False)
