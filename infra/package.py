"""Build the Lambda artifact that template.yaml and infra/ deploy (`make package`).

    python infra/package.py [--out build/pgfleet-lambda.zip] [--python-version 3.13]

What goes in: the runtime dependencies of pyproject.toml (`[project].dependencies`, pinned), as
binary wheels for Lambda's platform (CPython of the template's `Runtime`, x86_64, glibc 2.34
of Amazon Linux 2023 or older), installed with pip into a staging directory beside the
`pgfleet` package (functions/pgfleet, without caches); then one zip of it, written in a fixed
order with fixed times, so the same inputs give the same bytes. The local-only tools (moto,
Patroni, the Terraform plugin protocol, embedded PostgreSQL) are the `local` extra and stay
out.

Lambda refuses a function whose code is over 250 MB unzipped (262,144,000 bytes): the build
fails past it. It prints its figures: files, unzipped and zipped sizes, and the largest parts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "functions" / "pgfleet"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: "250 MB" in Lambda's quotas
# Amazon Linux 2023 (the python3.12+ runtimes) has glibc 2.34: any manylinux tag up to it.
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
SKIPPED = {"__pycache__", "pgfleet.egg-info"}


def runtime_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def template_python() -> str:
    """The Python version of the template's Runtime (python3.13 -> "3.13")."""
    found = re.search(r"^\s*Runtime:\s*python(\d+\.\d+)", (ROOT / "template.yaml").read_text(), re.M)
    if not found:
        raise SystemExit("template.yaml names no python Runtime")
    return found[1]


def install(staging: Path, python_version: str) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(staging), "--implementation", "cp", "--python-version", python_version,
        "--only-binary=:all:", *(arg for p in PLATFORMS for arg in ("--platform", p)), *runtime_dependencies(),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip could not install the runtime dependencies:\n{proc.stdout}{proc.stderr}")


def copy_package(staging: Path) -> None:
    shutil.copytree(PACKAGE, staging / "pgfleet", ignore=shutil.ignore_patterns(*SKIPPED, "*.pyc"))


def files_of(staging: Path) -> list[Path]:
    found = []
    for directory, dirs, names in os.walk(staging):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        found += [Path(directory) / n for n in sorted(names) if not n.endswith(".pyc")]
    return found


def write_zip(staging: Path, out: Path) -> tuple[int, int]:
    """The zip of `staging`; returns (files, unzipped bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    total, count = 0, 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in files_of(staging):
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), FIXED_TIME)
            info.external_attr = ((0o755 if os.access(path, os.X_OK) else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            zf.writestr(info, data)
            total += len(data)
            count += 1
    return count, total


def largest(staging: Path, n: int = 6) -> list[tuple[str, int]]:
    sizes = {
        top.name: sum(p.stat().st_size for p in ([top] if top.is_file() else top.rglob("*")) if p.is_file())
        for top in staging.iterdir()
    }
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:n]


def build(out: Path, staging: Path, python_version: str) -> tuple[int, int]:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    install(staging, python_version)
    copy_package(staging)
    count, total = write_zip(staging, out)
    if total > LAMBDA_UNZIPPED_LIMIT:
        raise SystemExit(f"{out}: {total:,} bytes unzipped, over Lambda's {LAMBDA_UNZIPPED_LIMIT:,}")
    return count, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "pgfleet-lambda.zip")
    parser.add_argument("--staging", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--python-version", default=None, help="default: the template's Runtime")
    args = parser.parse_args(argv)
    version = args.python_version or template_python()
    count, total = build(args.out, args.staging, version)
    print(f"{args.out}: python{version} x86_64, {count} files, {total / 1e6:.1f} MB unzipped "
          f"(limit {LAMBDA_UNZIPPED_LIMIT / 1e6:.1f}), {args.out.stat().st_size / 1e6:.1f} MB zipped")  # fmt: skip
    print("largest: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest(args.staging)))


if __name__ == "__main__":
    main()
