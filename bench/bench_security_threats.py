"""Threat detection (issue 18). Goal: 20 failed logins within one minute from one source are a
BRUTE_FORCE threat within 60 s of the 20th attempt, by the minute schedule alone (nothing asks
for a scan: GET /threats/active is polled every second, as a dashboard would).

Also printed: how long one `POST /threats/scan` of the instance takes once the attack is in
its log (the work the schedule does per server each minute), over `--scans` runs.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from _stack import local_stack, summary
from psycopg.conninfo import conninfo_to_dict, make_conninfo

T = "/api/v1/security/threats"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--scans", type=int, default=10)
    args = parser.parse_args()
    with local_stack() as stack:
        operator, analyst = stack.token("operator", "acme"), stack.token("security_analyst", "acme")
        status, made = stack.request("POST", "/api/v1/postgres/single", {"name": "bench-threats"}, operator)
        assert status == 202, made
        stack.wait_created(made["operation_id"], operator)
        iid = made["id"]
        wrong = make_conninfo(**{**conninfo_to_dict(made["credentials"]["uri"]), "password": "wrong"})
        started = time.monotonic()
        for _ in range(args.attempts):
            try:
                psycopg.connect(wrong, connect_timeout=5).close()
            except psycopg.OperationalError:
                pass
        last_attempt = time.monotonic()
        detected = None
        while detected is None and time.monotonic() - last_attempt < 180:
            _, body = stack.request("GET", f"{T}/active?threat_type=BRUTE_FORCE&time_range=1h", token=analyst)
            mine = [t for t in body.get("threats", []) if t["target_id"] == iid]
            if mine and (mine[0]["indicators"].get("failed_attempts") or 0) >= args.attempts:
                detected = time.monotonic() - last_attempt
            else:
                time.sleep(1)
        print(f"{args.attempts} failed logins sent in {last_attempt - started:.2f}s")
        if detected is None:
            print("BRUTE_FORCE not detected within 180 s of the last attempt (goal: <= 60 s): FAIL")
        else:
            verdict = "ok" if detected <= 60 else "FAIL"
            print(f"BRUTE_FORCE listed {detected:.1f}s after the last attempt (goal: <= 60 s): {verdict}")
        took = []
        for _ in range(args.scans):
            t0 = time.perf_counter()
            status, _ = stack.request("POST", f"{T}/scan?targetId={iid}", token=analyst)
            assert status == 200
            took.append(time.perf_counter() - t0)
        print(summary("POST /threats/scan of one instance (logs, catalog, audit trail)", took))


if __name__ == "__main__":
    main()
