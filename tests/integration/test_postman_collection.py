"""The committed Postman collection is the one tests/postman/generate.py makes from today's
OpenAPI document (the converter runs under node: `make install` puts it in .venv/node)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_the_committed_collection_is_up_to_date_with_the_openapi_document() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "postman" / "generate.py"), "--check"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
