"""`terraform apply` of one pgfleet_instance against a local stack (goal: <= 5 s).

Times `terraform apply -auto-approve` (and the `terraform destroy` after it) of a configuration
with one `pgfleet_instance`, RUNS times, in two ways of running the provider:

- mirror: installed by `pgfleet.provider.install`, as users run it; Terraform starts the
  Python provider for each command, so every apply pays its start-up.
- reattach: one provider process started with `--dev`, Terraform attaching to it through
  TF_REATTACH_PROVIDERS (the provider's debug mode), so only the work itself is timed.

Each mode first does one untimed apply and destroy (the first create also builds the
PostgreSQL template data directory, and the provider caches its TLS certificate).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _stack import REPO, local_stack, summary

from pgfleet.provider import SOURCE_ADDRESS
from pgfleet.provider.install import console_script, install

RUNS = 3
CONFIG = """terraform {
  required_providers {
    pgfleet = { source = "pgfleet/pgfleet" }
  }
}

resource "pgfleet_instance" "bench" {
  name = "bench-db"
}
"""


def terraform(workdir: Path, env: dict[str, str], *args: str) -> float:
    """Run one terraform command; return its wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["terraform", *args, "-no-color"], cwd=workdir, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"terraform {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


@contextmanager
def reattached_provider(env: dict[str, str]) -> Iterator[str]:
    """Run the provider in debug mode; yield the TF_REATTACH_PROVIDERS value it prints."""
    proc = subprocess.Popen(
        [str(console_script()), "--dev"],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while "TF_REATTACH_PROVIDERS" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("the provider exited before serving")
        match = re.search(r"TF_REATTACH_PROVIDERS='(.*)'", line)
        assert match, line
        socket = Path(json.loads(match.group(1))[SOURCE_ADDRESS]["Addr"]["String"])
        while not socket.exists():  # it prints the address just before it listens
            time.sleep(0.01)
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def measure(mode: str, workdir: Path, env: dict[str, str]) -> None:
    workdir.mkdir()
    (workdir / "main.tf").write_text(CONFIG)
    terraform(workdir, env, "init", "-input=false")
    terraform(workdir, env, "apply", "-auto-approve", "-input=false")  # warm-up
    terraform(workdir, env, "destroy", "-auto-approve", "-input=false")
    applies, destroys = [], []
    for _ in range(RUNS):
        applies.append(terraform(workdir, env, "apply", "-auto-approve", "-input=false"))
        destroys.append(terraform(workdir, env, "destroy", "-auto-approve", "-input=false"))
    print(summary(f"terraform apply   ({mode})", applies))
    print(summary(f"terraform destroy ({mode})", destroys))


def main() -> None:
    with local_stack() as stack:
        installed = install(stack.home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
        env.update(
            TF_CLI_CONFIG_FILE=str(installed.cli_config),
            TF_IN_AUTOMATION="1",
            CHECKPOINT_DISABLE="1",
            PGFLEET_API_URL=stack.url,
            PGFLEET_TOKEN=stack.token("operator", "bench"),
            PYTHONPATH=str(REPO / "functions"),
        )
        measure("mirror", stack.home / "tf-mirror", env)
        with reattached_provider(env) as reattach:
            measure("reattach", stack.home / "tf-reattach", {**env, "TF_REATTACH_PROVIDERS": reattach})


if __name__ == "__main__":
    main()
