"""The committed Postman collection covers every operation of the OpenAPI document, each with
the checks newman runs, and sends real ids (tests/postman/generate.py; `make postman`)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.helpers import REPO

POSTMAN = REPO / "tests" / "postman"


def _requests(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.extend(_requests(item["item"]) if "item" in item else [item])
    return out


def _route(request: dict[str, Any]) -> tuple[str, str]:
    path = "/" + "/".join(re.sub(r"^:(.+)$", r"{\1}", s) for s in request["url"]["path"])
    return request["method"].lower(), path


def test_every_operation_has_a_request_with_the_checks_and_real_ids(call: Any) -> None:
    _, openapi = call("GET", "/api/v1/openapi.json", role=None)
    collection = json.loads((POSTMAN / "pgfleet.postman_collection.json").read_text())
    folders = {f["name"]: f for f in collection["item"]}
    generated = _requests(folders["API (generated from the OpenAPI document)"]["item"])
    declared = {(m, p) for p, item in openapi["paths"].items() for m in item}
    assert {_route(r["request"]) for r in generated} == declared, "stale collection: run `make postman`"
    for item in generated:
        script = "\n".join(line for e in item["event"] for line in e["script"]["exec"])
        assert "not a server error" in script and "a 4xx answers the error shape" in script, item["name"]
        for variable in item["request"]["url"].get("variable", []):
            assert re.fullmatch(r"\{\{\w+\}\}", variable["value"]), (item["name"], variable)
        body = item["request"].get("body", {}).get("raw", "")
        assert not re.search(r'"<[a-zA-Z-]+>"', body), (item["name"], body)
    # the hand-written folders around them, in the order newman runs them
    assert list(folders) == [
        "Lifecycle: a single instance", "Setup", "API (generated from the OpenAPI document)", "Teardown",
    ]  # fmt: skip
    assert collection["auth"]["bearer"][0]["value"] == "{{token}}"


def test_the_environment_names_the_variables_newman_is_given() -> None:
    environment = json.loads((POSTMAN / "local.postman_environment.json").read_text())
    assert {v["key"] for v in environment["values"]} == {"baseUrl", "token", "operatorToken"}
