"""Encrypted logical dumps of one database: pg_dump -Fc piped through openssl, and back.

Both ends of each pipe run as the data-plane user. The passphrase reaches openssl through its
environment (`-pass env:`), never a command line, and is never logged. The dump format is
PostgreSQL's custom format, so pg_restore can restore one schema or the whole database.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

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


def pipe(producer: Sequence[str], consumer: Sequence[str], passphrase: str, what: str) -> None:
    """Run `producer | consumer` as the data-plane user; EngineError naming the side that
    failed, with its last stderr lines."""
    env = {**os.environ, PASSPHRASE_ENV: passphrase}
    with (
        subprocess.Popen(
            process.as_data_plane_user(producer), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        ) as first,
        subprocess.Popen(
            process.as_data_plane_user(consumer),
            stdin=first.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        ) as second,
    ):
        assert first.stdout is not None
        first.stdout.close()  # the consumer holds the read end now; lets the producer see EPIPE
        try:
            _, second_err = second.communicate(timeout=TIMEOUT)
            first_err = first.stderr.read() if first.stderr else b""
            first.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:
            first.kill()
            second.kill()
            raise EngineError(f"{what} timed out") from exc
    for proc, err, argv in ((first, first_err, producer), (second, second_err, consumer)):
        if proc.returncode != 0:
            detail = " ".join(err.decode(errors="replace").strip().splitlines()[-3:])
            raise EngineError(f"{what}: {Path(argv[0]).name} failed ({proc.returncode}): {detail}")


def dump(pg_dump: Sequence[str], output: Path, passphrase: str) -> int:
    """`pg_dump` (argv writing the dump to stdout) into `output`, encrypted. Writes a
    temporary file first, so `output` is whole or absent. Returns its size."""
    partial = output.with_name(output.name + ".partial")
    pipe(pg_dump, encrypt_argv(partial), passphrase, "logical dump")
    os.replace(partial, output)
    return output.stat().st_size


def decrypt(source: Path, output: Path, passphrase: str) -> None:
    """Decrypt `source` into `output` (a plain pg_dump archive the caller removes)."""
    if not source.is_file():
        raise EngineError(f"dump file {source} does not exist")
    env = {PASSPHRASE_ENV: passphrase}
    process.run([*decrypt_argv(source), "-out", str(output)], env=env, timeout=TIMEOUT)
