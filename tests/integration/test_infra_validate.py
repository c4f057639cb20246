"""`terraform validate` of infra/ with the real AWS provider, offline: the provider comes from
the machine's filesystem mirror (PGFLEET_TF_MIRROR, default /opt/tf-plugins), the module is
copied to a scratch directory so no .terraform lands in the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = shutil.which("terraform")
MIRROR = Path(os.environ.get("PGFLEET_TF_MIRROR", "/opt/tf-plugins"))
HAS_AWS = any(
    (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").glob("*/linux_amd64/terraform-provider-aws*")
)


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on PATH")
@pytest.mark.skipif(not HAS_AWS, reason=f"no hashicorp/aws provider in the mirror {MIRROR} (offline machine)")
def test_infra_validates_with_the_aws_provider(tmp_path: Path) -> None:
    module = tmp_path / "infra"
    shutil.copytree(
        ROOT / "infra", module, ignore=shutil.ignore_patterns(".terraform*", "*.py", "__pycache__")
    )
    config = tmp_path / "terraform.rc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{MIRROR}"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        "}\n"
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }
    init = subprocess.run([str(TERRAFORM), "init", "-backend=false", "-input=false", "-no-color"], cwd=module,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    proc = subprocess.run([str(TERRAFORM), "validate", "-json", "-no-color"], cwd=module, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    report = json.loads(proc.stdout)
    assert report["valid"] is True and report["error_count"] == 0, report["diagnostics"]
    assert report["warning_count"] == 0, report["diagnostics"]
