"""Encrypted logical dumps of one database: pg_dump -Fc piped through openssl, and back; and
the table of contents of a dump, as a restore reads it.

Both ends of each pipe run as the data-plane user. The passphrase reaches openssl through its
environment (`-pass env:`), never a command line, and is never logged. The dump format is
PostgreSQL's custom format, so pg_restore can restore one schema or the whole database.

A dump's content is the tenant's: restoring it runs its code (a CHECK constraint calling one of
its functions runs for every row loaded). So a restore never runs as a superuser: the host
restores each run of entries as the role that owns them (`restore_runs`), and creates the
schemas itself (`TocEntry.schema`) so no tenant role needs CREATE on a database.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgfleet.adapters.engines.local import process
from pgfleet.core.errors import EngineError

OPENSSL = "/usr/bin/openssl"
PASSPHRASE_ENV = "PGFLEET_DUMP_PASSPHRASE"
# aes-256-cbc like the pgBackRest repository; PBKDF2 so the passphrase is stretched.
CIPHER = ["-aes-256-cbc", "-pbkdf2", "-iter", "100000", "-salt", "-pass", f"env:{PASSPHRASE_ENV}"]
TIMEOUT = 6 * 3600.0


def encrypt_argv(output: Path) -> list[str]:
    return [OPENSSL, "enc", *CIPHER, "-out", str(output)]


def decrypt_argv(source: Path) -> list[str]:
    return [OPENSSL, "enc", "-d", *CIPHER, "-in", str(source)]


def pipe(
    producer: Sequence[str], consumer: Sequence[str], passphrase: str, what: str, timeout: float = TIMEOUT
) -> None:
    """Run `producer | consumer` as the data-plane user; EngineError naming the side that
    failed, with its last stderr lines. Only the consumer (openssl) is given the passphrase;
    both get the data plane's clean environment and their own process groups, killed whole
    when the pipe outlives `timeout`."""

    def start(argv: Sequence[str], env: dict[str, str], **streams: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            process.as_data_plane_user(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            **streams,
        )

    with start(producer, process.child_env(), stdin=subprocess.DEVNULL) as first:
        with start(consumer, process.child_env({PASSPHRASE_ENV: passphrase}), stdin=first.stdout) as second:
            assert first.stdout is not None
            first.stdout.close()  # the consumer holds the read end now; lets the producer see EPIPE
            try:
                _, second_err = second.communicate(timeout=timeout)
                first_err = first.stderr.read() if first.stderr else b""
                first.wait(timeout=60)
            except subprocess.TimeoutExpired as exc:
                process.kill_group(first)
                process.kill_group(second)
                raise EngineError(
                    f"{what} timed out after {timeout:.0f}s; its processes were killed"
                ) from exc
            except BaseException:
                process.kill_group(first)
                process.kill_group(second)
                raise
    for proc, err, argv in ((first, first_err, producer), (second, second_err, consumer)):
        if proc.returncode != 0:
            detail = " ".join(err.decode(errors="replace").strip().splitlines()[-3:])
            raise EngineError(f"{what}: {Path(argv[0]).name} failed ({proc.returncode}): {detail}")


def dump(pg_dump: Sequence[str], output: Path, passphrase: str, timeout: float = TIMEOUT) -> int:
    """`pg_dump` (argv writing the dump to stdout) into `output`, encrypted. Writes a
    temporary file first, so `output` is whole or absent. Returns its size."""
    partial = output.with_name(output.name + ".partial")
    try:
        pipe(pg_dump, encrypt_argv(partial), passphrase, "logical dump", timeout)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return output.stat().st_size


def decrypt(source: Path, output: Path, passphrase: str) -> None:
    """Decrypt `source` into `output` (a plain pg_dump archive the caller removes)."""
    if not source.is_file():
        raise EngineError(f"dump file {source} does not exist")
    env = {PASSPHRASE_ENV: passphrase}
    process.run([*decrypt_argv(source), "-out", str(output)], env=env, timeout=TIMEOUT)


# `pg_restore -l` prints "<dumpId>; <tableoid> <oid> <DESC> <schema or -> <tag> <owner>"; the
# owner is "" for entries that have none (extensions). Role names pgfleet deals with hold no
# space, so the owner is the last field.
TOC_LINE = re.compile(r"^(\d+); \d+ \d+ (.*)$")
SCHEMA_ENTRY = re.compile(r"^SCHEMA - (.+) (\S*)$")
SCHEMA_DETAIL = re.compile(r"^(?:COMMENT|ACL) - SCHEMA (.+) (\S*)$")
# Privileges on system objects that differ from initdb's (say, on the large-object functions):
# the server's own policy, which the restoring side applies itself.
CATALOG_ENTRY = re.compile(r"^[A-Z][A-Z ]* pg_catalog ")


@dataclass(frozen=True)
class TocEntry:
    """One entry of a dump's table of contents, as `pg_restore -l` lists it."""

    line: str
    dump_id: int
    owner: str
    schema: str | None = None  # a SCHEMA entry: the schema's name
    on_schema: str | None = None  # a COMMENT or ACL entry on a schema: the schema's name
    catalog: bool = False  # about an object of pg_catalog


def parse_toc(listing: str) -> list[TocEntry]:
    """The entries of a `pg_restore -l` listing, in its order (comments skipped)."""
    entries = []
    for line in listing.splitlines():
        match = TOC_LINE.match(line)
        if match is None:
            continue
        body = match.group(2)
        owner = body.rsplit(" ", 1)[1] if " " in body else ""
        schema = SCHEMA_ENTRY.match(body)
        detail = SCHEMA_DETAIL.match(body)
        entries.append(
            TocEntry(
                line=line,
                dump_id=int(match.group(1)),
                owner=owner,
                schema=schema.group(1) if schema else None,
                on_schema=detail.group(1) if detail else None,
                catalog=CATALOG_ENTRY.match(body) is not None,
            )
        )
    return entries


def of_schema(entries: list[TocEntry], in_schema: set[int], schema: str) -> list[TocEntry]:
    """The entries that make `schema`: the schema itself, its comment and privileges, and the
    entries `in_schema` names (the dump ids `pg_restore -l -n schema` lists)."""
    return [e for e in entries if e.dump_id in in_schema or schema in (e.schema, e.on_schema)]


def restore_runs(entries: list[TocEntry], role_of: Callable[[str], str]) -> list[tuple[str, list[TocEntry]]]:
    """The entries the restoring roles restore (not schemas, nor catalog entries), in dump
    order, cut into runs of consecutive entries restored by the same role (`role_of(owner)`)."""
    runs: list[tuple[str, list[TocEntry]]] = []
    for entry in entries:
        if entry.schema is not None or entry.catalog:
            continue
        role = role_of(entry.owner)
        if runs and runs[-1][0] == role:
            runs[-1][1].append(entry)
        else:
            runs.append((role, [entry]))
    return runs
