"""The local AWS endpoint: a moto server whose state survives restarts and `kill -9`.

Why this exists: the local stack needs DynamoDB, Secrets Manager, SQS and EventBridge Scheduler
on loopback. LocalStack cannot run here (its DynamoDB downloads a JDK, its Lambda needs
Docker), so we serve moto, which speaks the same wire protocols. moto keeps all state in
process memory, and the local stack promises that metadata, secrets and schedules come back
after `pgfleet down`/`up` or a `kill -9`.

How: a write-ahead request journal. A WSGI middleware in front of moto's app appends every
state-changing request that moto answered with a 2xx to `<state-dir>/journal.jsonl` and
fsyncs it before the client sees the response. On start, before listening, the journal is
replayed in order against a fresh moto. Replaying requests rather than snapshotting moto's
objects keeps us off moto's private models, which change between releases.

Two details make a replay reproduce the original state, not just a similar one:
- A lock is held across "apply in moto + append to the journal", so journal order is apply
  order.
- moto draws identifiers (secret ARN suffixes, version ids) from one shared random generator.
  Each journaled request runs with that generator pinned, for its thread, to a seed stored in
  its journal entry, so a replayed CreateSecret yields the same ARN that clients stored.

S3 writes are journaled with their bodies (compliance reports and evidence: documents of a
few kilobytes to a few megabytes that the metadata points at).

SQS messages are deliberately not journaled: only queue management is. Messages in flight
may be lost on a crash; the control plane re-enqueues work from the Operations it persisted.

Run: `python -m pgfleet.local.aws --host 127.0.0.1 --port 4566 --state-dir DIR`.
"""

from __future__ import annotations

import argparse
import base64
import io
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

log = logging.getLogger("pgfleet.local.aws")

JOURNAL_NAME = "journal.jsonl"
JOURNAL_VERSION = 1
# Past this size a restart spends noticeable time replaying; say so, but do not snapshot.
LARGE_JOURNAL_BYTES = 64 * 1024 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# --- which requests change state -------------------------------------------------------------

_DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_DYNAMODB_PARTIQL = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})
_SECRETS_READ_PREFIXES = ("Get", "Describe", "List", "BatchGet", "Validate")
# Only the control plane of SQS: messages are transient by design (see module docstring).
_SQS_QUEUE_MANAGEMENT = frozenset(
    {
        "CreateQueue",
        "DeleteQueue",
        "SetQueueAttributes",
        "TagQueue",
        "UntagQueue",
        "AddPermission",
        "RemovePermission",
    }
)
_SCHEDULER_PREFIXES = ("/schedules", "/schedule-groups", "/tags/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Transport headers: werkzeug recomputes them on replay, or they mean nothing after the fact.
_UNJOURNALED_HEADERS = frozenset(
    {"CONTENT_LENGTH", "CONNECTION", "KEEP_ALIVE", "TRANSFER_ENCODING", "EXPECT", "ACCEPT_ENCODING"}
)


def request_service(environ: dict[str, Any]) -> str | None:
    """The journaled service a request is for, or None for anything we pass straight through."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    prefix = target.split(".", 1)[0]
    # "DynamoDBStreams_..." does not match "DynamoDB_": streams are read-only.
    if prefix.startswith("DynamoDB_"):
        return "dynamodb"
    if prefix == "secretsmanager":
        return "secretsmanager"
    if prefix == "AmazonSQS":
        return "sqs"
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    scope = match.group(1) if match else None
    # SQS's older query protocol, Scheduler's REST-JSON and S3's REST carry no target header.
    return scope if scope in ("sqs", "scheduler", "s3") else None


def journaled_action(service: str, environ: dict[str, Any], body: bytes) -> str | None:
    """The action name when the request changes state and must be journaled, else None."""
    if service == "scheduler":
        return _scheduler_action(environ)
    if service == "s3":  # REST: every PUT, POST and DELETE changes a bucket or an object
        method = environ.get("REQUEST_METHOD", "GET").upper()
        return None if method in _SAFE_METHODS else f"{method} s3"
    action = _target_action(environ) or _query_protocol_action(environ, body)
    if action is None:
        return None
    if service == "dynamodb":
        return action if _dynamodb_mutates(action, body) else None
    if service == "secretsmanager":
        return None if action.startswith(_SECRETS_READ_PREFIXES) else action
    return action if action in _SQS_QUEUE_MANAGEMENT else None


def _target_action(environ: dict[str, Any]) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    return target.split(".", 1)[1] if "." in target else None


def _query_protocol_action(environ: dict[str, Any], body: bytes) -> str | None:
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qs(body.decode("utf-8", "replace")))
    actions = params.get("Action")
    return actions[0] if actions else None


def _dynamodb_mutates(action: str, body: bytes) -> bool:
    if action in _DYNAMODB_READS or action.startswith(("Describe", "List", "Get")):
        return False
    if action in _DYNAMODB_PARTIQL:
        return not _partiql_only_selects(body)
    # Unknown actions default to journaled: replaying a read is harmless, losing a write is not.
    return True


def _partiql_only_selects(body: bytes) -> bool:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return False
    statements = [request.get("Statement")]
    statements += [s.get("Statement") for s in request.get("Statements", [])]
    statements += [s.get("Statement") for s in request.get("TransactStatements", [])]
    texts = [s for s in statements if isinstance(s, str)]
    return bool(texts) and all(s.lstrip().upper().startswith("SELECT") for s in texts)


def _scheduler_action(environ: dict[str, Any]) -> str | None:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "")
    if method in _SAFE_METHODS or not path.startswith(_SCHEDULER_PREFIXES):
        return None
    return f"{method} /{path.split('/')[1]}"


# --- deterministic identifiers ---------------------------------------------------------------


def _thread_pinnable_random_class() -> type[Any]:
    from moto.moto_api._internal.moto_random import MotoRandom

    class ThreadPinnableRandom(MotoRandom):
        """moto's random generator, whose stream one thread can pin to a seed.

        Every MotoRandom method draws through random() or getrandbits(), so overriding those
        two redirects all of them. Unpinned threads share one generator, as before.
        """

        pinned = threading.local()
        shared = random.Random()

        def _source(self) -> random.Random:
            return getattr(self.pinned, "rng", None) or self.shared

        def random(self) -> float:
            return self._source().random()

        def getrandbits(self, k: int, /) -> int:
            return self._source().getrandbits(k)

        def seed(self, a: Any = None, version: int = 2) -> None:
            # Keeps moto's own /moto-api/seed endpoint working.
            self.shared.seed(a, version)

    return ThreadPinnableRandom


def install_pinnable_random() -> None:
    """Make moto's global generator pinnable per thread (idempotent).

    moto modules hold a reference to the one `mock_random` instance, so we change its class
    in place instead of replacing the object.
    """
    from moto.moto_api._internal import mock_random

    if not hasattr(type(mock_random), "pinned"):
        mock_random.__class__ = _thread_pinnable_random_class()


@contextmanager
def pinned_random(seed: int) -> Iterator[None]:
    """Within the block, moto's identifiers drawn by this thread come from `seed`."""
    from moto.moto_api._internal import mock_random

    pinned = type(mock_random).pinned  # type: ignore[attr-defined]
    pinned.rng = random.Random(seed)
    try:
        yield
    finally:
        pinned.rng = None


# --- the journal -----------------------------------------------------------------------------


class Journal:
    """An append-only JSON-lines file; every append is on disk before append() returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: io.BufferedWriter | None = None

    def load(self) -> list[dict[str, Any]]:
        """Read every complete entry, dropping a torn last line left by a crash mid-write.

        A torn entry was never fsynced, so its client never got a response: dropping it
        loses nothing that was acknowledged. Truncating it also keeps the next append from
        being glued onto the torn bytes.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            complete = data.rfind(b"\n") + 1
            log.warning("dropping a torn journal tail of %d bytes", len(data) - complete)
            os.truncate(self.path, complete)
            data = data[:complete]
        return list(self._parse(data))

    @staticmethod
    def _parse(data: bytes) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                yield json.loads(line)
            except ValueError:
                log.error("skipping unreadable journal line %d", number)

    def open(self) -> None:
        created = not self.path.exists()
        # 0600: request bodies hold secret values.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")
        if created:
            _fsync_dir(self.path.parent)  # the new file's directory entry must survive too

    def append(self, entry: dict[str, Any]) -> None:
        assert self._file is not None, "open() first"
        self._file.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry_from_environ(service: str, action: str, environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    return {
        "v": JOURNAL_VERSION,
        "ts": round(time.time(), 3),
        "service": service,
        "action": action,
        "seed": secrets.randbits(63),
        "method": environ.get("REQUEST_METHOD", "GET"),
        "path": _raw_path(environ),
        "query": environ.get("QUERY_STRING", ""),
        "headers": _journaled_headers(environ),
        "body": base64.b64encode(body).decode("ascii"),
    }


def _raw_path(environ: dict[str, Any]) -> str:
    # The raw path keeps percent-escapes (a Scheduler tag ARN has an escaped "/") as sent.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw).split("?", 1)[0]
    return quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")


def _journaled_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_") and key[5:] not in _UNJOURNALED_HEADERS
    }
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    return headers


# --- calling moto ----------------------------------------------------------------------------


@dataclass
class BufferedResponse:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split(" ", 1)[0])

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def error_type(self) -> str:
        """The AWS error code, from headers only: error bodies may echo request values."""
        for name, value in self.headers:
            if name.lower() in ("x-amzn-errortype", "x-amzn-query-error"):
                return value.split(":", 1)[0]
        return "-"


def call_buffered(app: WSGIApp, environ: dict[str, Any]) -> BufferedResponse:
    """Run a WSGI app to completion: the response must be known before it is journaled."""
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, list(headers)
        return chunks.append  # the legacy write() callable

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return BufferedResponse(started["status"], started["headers"], b"".join(chunks))


def _buffer_body(environ: dict[str, Any]) -> bytes:
    """Read the request body once and put it back, so moto and the journal both see it."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


class JournalingApp:
    """WSGI middleware: journal state-changing requests that moto accepted, then answer.

    One lock covers every DynamoDB, Secrets Manager, Scheduler and S3 request and SQS queue
    management: writes so that journal order is apply order, reads so that they never see a
    backend mid-write. Other services and SQS messages pass straight through.
    """

    def __init__(self, app: WSGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service = request_service(environ)
        if service is None:
            return self.app(environ, start_response)
        body = _buffer_body(environ)
        action = journaled_action(service, environ, body)
        if action is not None:
            response = self._apply_and_journal(_entry_from_environ(service, action, environ, body), environ)
        elif service == "sqs":
            # Message traffic: never under the lock, a long-polling ReceiveMessage would stall writes.
            return self.app(environ, start_response)
        else:
            # moto's backends are not thread-safe: a read iterating a dict while a write grows it
            # fails with a 500. Under the GIL serializing them costs little throughput.
            with self.lock:
                response = call_buffered(self.app, environ)
        start_response(response.status, response.headers)
        return [response.body]

    def _apply_and_journal(self, entry: dict[str, Any], environ: dict[str, Any]) -> BufferedResponse:
        with self.lock:
            with pinned_random(entry["seed"]):
                response = call_buffered(self.app, environ)
            if not response.ok:
                return response  # moto rejected it: nothing changed, nothing to replay
            try:
                self.journal.append(entry)
            except OSError as exc:
                # moto applied it in memory but it would not survive a restart: tell the client.
                log.error("journal append failed for %s: %s", entry["action"], exc)
                return _journal_failure()
        return response


def _journal_failure() -> BufferedResponse:
    body = json.dumps({"__type": "ServiceUnavailable", "message": "local journal write failed"})
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", "ServiceUnavailable")]
    return BufferedResponse("503 SERVICE UNAVAILABLE", headers, body.encode())


# --- replay ----------------------------------------------------------------------------------


def environ_from_entry(entry: dict[str, Any]) -> dict[str, Any]:
    from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        path=entry["path"],
        method=entry["method"],
        query_string=entry["query"],
        headers=entry["headers"],
        data=base64.b64decode(entry["body"]),
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    raw_uri = entry["path"] + (f"?{entry['query']}" if entry["query"] else "")
    environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {}  # as MotoRequestHandler sets it
    return environ


def replay(app: WSGIApp, entries: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Apply journal entries in order; return (applied, skipped). Failures are logged, skipped."""
    applied = skipped = 0
    for number, entry in enumerate(entries, start=1):
        try:
            with pinned_random(entry["seed"]):
                response = call_buffered(app, environ_from_entry(entry))
        except Exception as exc:  # one bad entry must not keep the whole endpoint down
            log.warning("replay of entry %d (%s) raised %s; skipped", number, entry.get("action"), exc)
            skipped += 1
            continue
        if response.ok:
            applied += 1
        else:
            log.warning(
                "replay of entry %d (%s %s) now fails with %d %s; skipped",
                number,
                entry.get("service"),
                entry.get("action"),
                response.code,
                response.error_type(),
            )
            skipped += 1
    return applied, skipped


# --- serving ---------------------------------------------------------------------------------


def build_app(state_dir: Path) -> tuple[JournalingApp, Journal]:
    """A fresh moto app with the journal in `state_dir` replayed into it, wrapped for journaling."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    install_pinnable_random()
    moto_app = DomainDispatcherApplication(create_backend_app)
    journal = Journal(state_dir / JOURNAL_NAME)
    started = time.perf_counter()
    entries = journal.load()
    applied, skipped = replay(moto_app, entries)
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("replayed %d journal entries in %.0f ms (%d skipped)", applied, elapsed_ms, skipped)
    _note_large_journal(journal.path)
    journal.open()
    return JournalingApp(moto_app, journal), journal


def _note_large_journal(path: Path) -> None:
    size = path.stat().st_size if path.exists() else 0
    if size > LARGE_JOURNAL_BYTES:
        log.warning("journal %s is %.0f MB; restarts replay all of it", path, size / 2**20)


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        # moto accepts any credentials: exposing it beyond this machine would expose every secret.
        raise ValueError(f"refusing to serve the local AWS endpoint on non-loopback host {host!r}")


def _speed_up_moto() -> None:
    """moto lists its own package directory on every request to route it; the list never
    changes while the server runs, so compute it once (a third of a GetItem's time)."""
    import functools

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)  # type: ignore[assignment]


def serve(host: str, port: int, state_dir: str | os.PathLike[str]) -> None:
    """Replay the journal, then serve moto on host:port until interrupted. Loopback only."""
    from pgfleet.local import wsgi_server

    _require_loopback(host)
    _speed_up_moto()
    # moto builds some URLs that point back at itself from MOTO_PORT, as moto_server does.
    os.environ.setdefault("MOTO_PORT", str(port))
    app, journal = build_app(Path(state_dir))
    try:
        wsgi_server.serve(app, host, port)
    finally:
        journal.close()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # Every acknowledged write is already fsynced: a plain exit loses nothing.
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pgfleet.local.aws", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--state-dir", required=True, help="directory holding journal.jsonl")
    parser.add_argument("--log-requests", action="store_true", help="log one line per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    # werkzeug's request lines carry paths, never bodies; off by default because they are noisy.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.log_requests else logging.WARNING)
    try:
        _require_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    serve(args.host, args.port, args.state_dir)


if __name__ == "__main__":
    main()
