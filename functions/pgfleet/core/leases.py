"""Keeping an Operation's lease alive through a step that may outlast it.

Backups and restores of large databases take longer than `operations.LEASE_SECONDS`; without
a heartbeat, reconcile would hand the operation to a second worker while the first still
works on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from pgfleet.core import operations
from pgfleet.core.errors import PgfleetError
from pgfleet.core.operations import StepContext

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0


@contextlib.contextmanager
def lease_kept(ctx: StepContext, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Extend the lease of `ctx`'s operation every `every` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                op = ctx.ports.store.get(operations.KIND, ctx.operation["id"])
                if op is None:
                    return
                ctx.ports.store.update(
                    operations.KIND,
                    op["id"],
                    {"lease_until": time.time() + operations.LEASE_SECONDS},
                    op["revision"],
                )
            except PgfleetError as exc:  # a concurrent write: the next beat retries
                log.info("lease heartbeat of %s skipped: %s", ctx.operation["id"], exc)

    thread = threading.Thread(target=beat, name=f"lease-{ctx.operation['id']}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
