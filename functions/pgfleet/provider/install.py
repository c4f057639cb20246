"""Install the provider where `terraform init` finds it offline.

Writes a filesystem mirror in Terraform's unpacked layout,
`$PGFLEET_HOME/terraform/mirror/registry.terraform.io/pgfleet/pgfleet/<version>/<os>_<arch>/`,
holding `terraform-provider-pgfleet_v<version>`: a small script that execs this environment's
console script (the provider is Python: there is no binary to copy). Then writes a CLI
configuration that takes pgfleet/* from the mirror and everything else from its registry:

    python -m pgfleet.provider.install
    export TF_CLI_CONFIG_FILE=$PGFLEET_HOME/terraform/terraformrc
    terraform init
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pgfleet.provider import NAMESPACE, SOURCE_ADDRESS, TYPE, VERSION

EXECUTABLE = f"terraform-provider-{TYPE}"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Installation:
    mirror: Path
    executable: Path
    cli_config: Path


def target_platform() -> str:
    """Terraform's name for this machine, e.g. linux_amd64."""
    machine = platform.machine().lower()
    return f"{sys.platform.rstrip('0123456789')}_{_ARCH.get(machine, machine)}"


def console_script() -> Path:
    """The `terraform-provider-pgfleet` console script of the running environment."""
    script = Path(sys.executable).parent / EXECUTABLE
    if not script.exists():
        raise FileNotFoundError(
            f"{script} is missing: install pgfleet into this environment (pip install -e .)"
        )
    return script


def wrapper_script(target: Path) -> str:
    # An absolute exec keeps the provider's Python environment whatever PATH Terraform has.
    return f'#!/bin/sh\n# pgfleet Terraform provider {VERSION}: runs the Python provider.\nexec {shlex.quote(str(target))} "$@"\n'


def cli_config(mirror: Path) -> str:
    pattern = f"{SOURCE_ADDRESS.rsplit('/', 1)[0]}/*"
    return (
        "# Written by `python -m pgfleet.provider.install`.\n"
        "# Checkpoint calls home to HashiCorp: off, so that commands never wait on the network.\n"
        "disable_checkpoint = true\n\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {_hcl_string(str(mirror))}\n"
        f'    include = ["{pattern}"]\n'
        "  }\n"
        "  direct {\n"
        f'    exclude = ["{pattern}"]\n'
        "  }\n"
        "}\n"
    )


def _hcl_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${") + '"'


def install(home: Path, target: Path | None = None) -> Installation:
    """Put the provider into the mirror under `home` and write the CLI configuration.
    Idempotent: running it again rewrites the same files."""
    root = home / "terraform"
    mirror = root / "mirror"
    package_dir = mirror / SOURCE_ADDRESS / VERSION / target_platform()
    package_dir.mkdir(parents=True, exist_ok=True)
    executable = package_dir / f"{EXECUTABLE}_v{VERSION}"
    executable.write_text(wrapper_script(target or console_script()))
    executable.chmod(0o755)
    config = root / "terraformrc"
    config.write_text(cli_config(mirror))
    return Installation(mirror=mirror, executable=executable, cli_config=config)


def default_home() -> Path:
    return Path(os.environ.get("PGFLEET_HOME", Path.home() / ".pgfleet")).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgfleet.provider.install",
        description=f"Install the {NAMESPACE}/{TYPE} Terraform provider into a local filesystem mirror.",
    )
    parser.add_argument("--home", type=Path, default=None, help="default: $PGFLEET_HOME or ~/.pgfleet")
    args = parser.parse_args(argv)
    done = install((args.home or default_home()).resolve())
    print(f"provider {SOURCE_ADDRESS} {VERSION} installed: {done.executable}")
    print(f"export TF_CLI_CONFIG_FILE={shlex.quote(str(done.cli_config))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
