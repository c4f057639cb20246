"""The local runtime: the worker loop and the schedule ticker, in one process.

Worker loop: what Lambda's SQS event source does. Threads long-poll the operations queue,
invoke the worker handler with an SQS event, and delete the messages it did not report as
failed; a failed message becomes visible again after the visibility timeout.

Ticker: what EventBridge Scheduler does. It reads the schedules of the group from the
Scheduler API (so anything that creates a schedule in AWS creates it here too), and when one
is due invokes the scheduled handler with the schedule's Input, filling in the context
attributes. A `rate` schedule is due at start-up and then every period, so the stack
reconciles as soon as it starts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pgfleet.adapters.aws import client
from pgfleet.core import schedule_expressions
from pgfleet.core.settings import get_settings
from pgfleet.local.lambda_context import LocalLambdaContext

log = logging.getLogger("pgfleet.runtime")

WORKER_THREADS = int(os.environ.get("PGFLEET_WORKER_THREADS", "4"))
SCHEDULE_REFRESH_SECONDS = 10
_NEVER = datetime.max.replace(tzinfo=UTC)


def worker_loop(stop: threading.Event) -> None:
    from pgfleet.handlers.worker import lambda_handler

    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=get_settings().queue_name)["QueueUrl"]
    while not stop.is_set():
        try:
            resp = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
            )
        except Exception as exc:  # moto restarting: wait and retry
            log.warning("receive failed: %s", exc)
            stop.wait(1)
            continue
        messages = resp.get("Messages", [])
        if not messages:
            continue
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "eventSource": "aws:sqs",
                }
                for m in messages
            ]
        }
        result = lambda_handler(event, LocalLambdaContext("pgfleet-worker"))
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


class Ticker:
    def __init__(self) -> None:
        self._next: dict[str, datetime] = {}
        self._inputs: dict[str, tuple[str, str]] = {}  # name -> (expression, input)
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="schedule")
        self._refreshed = 0.0

    def refresh(self) -> None:
        settings = get_settings()
        sched = client("scheduler")
        seen: dict[str, tuple[str, str]] = {}
        kwargs: dict[str, Any] = {"GroupName": settings.schedule_group}
        while True:
            resp = sched.list_schedules(**kwargs)
            for summary in resp.get("Schedules", []):
                if summary.get("State", "ENABLED") != "ENABLED":
                    continue
                full = sched.get_schedule(Name=summary["Name"], GroupName=settings.schedule_group)
                seen[full["Name"]] = (full["ScheduleExpression"], full["Target"].get("Input") or "{}")
            if not resp.get("NextToken"):
                break
            kwargs["NextToken"] = resp["NextToken"]
        now = datetime.now(UTC)
        for name, (expression, payload) in seen.items():
            if self._inputs.get(name, ("",))[0] != expression or name not in self._next:
                first = now if schedule_expressions.rate_seconds(expression) else None
                self._next[name] = first or schedule_expressions.next_after(expression, now) or _NEVER
            self._inputs[name] = (expression, payload)
        for gone in set(self._inputs) - set(seen):
            self._inputs.pop(gone, None)
            self._next.pop(gone, None)
        self._refreshed = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._refreshed > SCHEDULE_REFRESH_SECONDS:
            self.refresh()
        now = datetime.now(UTC)
        for name, due in list(self._next.items()):
            if due > now:
                continue
            expression, payload = self._inputs[name]
            upcoming = schedule_expressions.next_after(expression, due)
            if upcoming is not None and upcoming <= now:  # fell behind (machine asleep): no backlog
                upcoming = schedule_expressions.next_after(expression, now)
            self._next[name] = upcoming or _NEVER
            with self._lock:
                if name in self._running:
                    log.info("schedule %s is still running; skipping this run", name)
                    continue
                self._running.add(name)
            self._pool.submit(self._fire, name, payload, due)

    def _fire(self, name: str, payload: str, due: datetime) -> None:
        from pgfleet.handlers.scheduled import lambda_handler

        try:
            text = payload.replace(
                "<aws.scheduler.scheduled-time>", due.strftime("%Y-%m-%dT%H:%M:%SZ")
            ).replace("<aws.scheduler.execution-id>", str(uuid.uuid4()))
            result = lambda_handler(json.loads(text), LocalLambdaContext("pgfleet-scheduled"))
            log.info("schedule %s fired: %s", name, result)
        except Exception:
            log.exception("schedule %s failed", name)
        finally:
            with self._lock:
                self._running.discard(name)


def ticker_loop(stop: threading.Event) -> None:
    ticker = Ticker()
    while not stop.is_set():
        try:
            ticker.tick()
        except Exception as exc:
            log.warning("ticker: %s", exc)
        stop.wait(1)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("PGFLEET_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=worker_loop, args=(stop,), name=f"worker-{i}", daemon=True)
        for i in range(WORKER_THREADS)
    ]
    threads.append(threading.Thread(target=ticker_loop, args=(stop,), name="ticker", daemon=True))
    for t in threads:
        t.start()
    log.info("runtime started: %d worker threads and the ticker", WORKER_THREADS)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":
    main()
