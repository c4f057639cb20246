"""Driving the real `terraform` CLI against a local stack: the provider installed the way a user
installs it (a filesystem mirror and a CLI configuration, `terraform init` offline)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgfleet.provider.install import install
from tests.helpers import LocalStack

PROVIDER_BLOCK = """terraform {
  required_providers {
    pgfleet = { source = "pgfleet/pgfleet" }
  }
}
"""


@dataclass
class Terraform:
    env: dict[str, str]

    def __call__(self, workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["terraform", *args], cwd=workdir, env=self.env, capture_output=True, text=True, timeout=600
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def workdir(self, path: Path, config: str) -> Path:
        path.mkdir()
        (path / "main.tf").write_text(config)
        self(path, "init", "-no-color")
        return path

    def apply(self, workdir: Path) -> None:
        self(workdir, "apply", "-auto-approve", "-no-color")

    def plan_is_empty(self, workdir: Path) -> bool:
        """True when a plan has nothing to do (exit code 0 of -detailed-exitcode; 2: changes)."""
        proc = self(workdir, "plan", "-detailed-exitcode", "-no-color", check=False)
        if proc.returncode not in (0, 2):
            raise AssertionError(f"terraform plan failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.returncode == 0

    def outputs(self, workdir: Path) -> dict[str, Any]:
        raw = json.loads(self(workdir, "output", "-json").stdout)
        return {name: out["value"] for name, out in raw.items()}

    def planned_actions(self, workdir: Path) -> dict[str, list[str]]:
        """What a plan would do, by resource address (["no-op"], ["update"], ...)."""
        self(workdir, "plan", "-no-color", "-out=change.tfplan")
        plan = json.loads(self(workdir, "show", "-json", "change.tfplan").stdout)
        return {c["address"]: list(c["change"]["actions"]) for c in plan.get("resource_changes", [])}

    def state_values(self, workdir: Path) -> dict[str, dict[str, Any]]:
        """The attributes of every resource and data source in state, by address."""
        shown = json.loads(self(workdir, "show", "-json").stdout)
        resources = shown.get("values", {}).get("root_module", {}).get("resources", [])
        return {r["address"]: r["values"] for r in resources}


def terraform_for(stack: LocalStack, token: str) -> Terraform:
    """Terraform with the provider installed into the stack's home and pointed at its API."""
    installed = install(stack.home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(
        TF_CLI_CONFIG_FILE=str(installed.cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        PGFLEET_API_URL=stack.url,
        PGFLEET_TOKEN=token,
    )
    return Terraform(env)
