"""infra/observability: the Grafana dashboard and the Prometheus rules query only series that
`GET /api/metrics` really emits (read from the code that renders the exposition), and the real
`promtool` accepts the rules, runs their unit tests, parses every dashboard query and accepts
the README's scrape configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.fakes import FakePorts

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "infra" / "observability"
RULES = OBSERVABILITY / "prometheus-rules.yml"
RULE_TESTS = OBSERVABILITY / "prometheus-rules.test.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
README = OBSERVABILITY / "README.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus: make system-packages)"
)
# The series names a family of each type exposes (prometheus_client's text format 0.0.4).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# Prometheus' own series for each scrape target: the one name the rules may use beyond pgfleet's.
SCRAPE_SERIES = {"up"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "inf", "nan"}  # fmt: skip
# Grafana's variables, as a query would see them once Grafana substituted them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$tenant": ".*",
    "$target": ".*",
}


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name `/api/metrics` can answer with, from the exposition that the code
    renders (its families are present even before they have samples)."""
    from pgfleet.core import telemetry
    from pgfleet.domains.platform import metrics

    ports = FakePorts(tmp_path_factory.mktemp("metrics"))
    families = [*metrics.platform_families(ports), *metrics.server_families(ports, [])]
    text = telemetry.exposition(families, with_requests=True).decode()
    names = {
        f.name + suffix for f in text_string_to_metric_families(text) for suffix in SAMPLE_SUFFIXES[f.type]
    }
    assert {
        "pgfleet_api_requests_total", "pgfleet_api_request_duration_seconds_bucket",
        "pgfleet_api_rate_limited_total", "pgfleet_queue_messages", "pgfleet_operations", "pgfleet_server_up",
        "pgfleet_server_replication_lag_seconds", "pgfleet_server_last_backup_age_seconds",
    } <= names, names  # fmt: skip
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside label matchers,
    strings, ranges and grouping clauses that are neither a function called nor a keyword."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for found in re.finditer(r"(?<![\w.:])[a-zA-Z_:][\w:]*", text):
        if text[found.end() :].lstrip().startswith("(") or found.group().lower() in PROMQL_KEYWORDS:
            continue
        names.add(found.group())
    return names


def test_the_name_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!="/x", status=~"5.."}[$__rate_interval])))'
        " / ignoring(state) b_total offset 5m > 26 * 3600 and on() c == bool 1e3"
        ' or count(d{x="by (z)"}) or vector(0)'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        assert label_values, f"variable {variable['name']}: {query}"
        queries.append((f"variable {variable['name']!r}", label_values[1]))
    return queries


def test_the_dashboard_is_importable_with_a_prometheus_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39 and dashboard["uid"] and dashboard["id"] is None
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    prometheus = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = list(_panels(dashboard))
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == prometheus and panel["targets"], panel["title"]
        assert all(t["datasource"] == prometheus and t["expr"] for t in panel["targets"]), panel["title"]
    assert all(v["datasource"] == prometheus for v in dashboard["templating"]["list"])


def test_the_dashboard_queries_only_series_the_api_emits(emitted: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for where, expr in _dashboard_queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where} selects no metric: {expr}"
        assert names <= emitted, f"{where} uses {sorted(names - emitted)}, which /api/metrics never emits"
        used |= names
    # request rate, errors, latency quantiles, rate limiting, queue, operations and the servers
    assert {
        "pgfleet_api_requests_total", "pgfleet_api_request_duration_seconds_bucket",
        "pgfleet_api_rate_limited_total", "pgfleet_queue_messages", "pgfleet_operations", "pgfleet_server_up",
        "pgfleet_server_connections", "pgfleet_server_max_connections", "pgfleet_server_replication_lag_seconds",
        "pgfleet_server_last_backup_age_seconds",
    } <= used  # fmt: skip


def test_the_rules_alert_on_series_the_api_emits(emitted: set[str]) -> None:
    rules = _rules()
    assert len(rules) >= 10
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= emitted | SCRAPE_SERIES, (rule["alert"], sorted(names - emitted))
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    # alerts on a condition that must last say for how long (events such as a failover need not)
    assert sum("for" in rule for rule in rules) >= len(rules) - 3
    assert len({rule["alert"] for rule in rules}) == len(rules)


def _promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


@needs_promtool
def test_the_rules_fire_on_synthetic_series() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    firing = {
        check["alertname"]
        for case in cases["tests"]
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert len(firing) >= 2, firing
    assert firing <= {rule["alert"] for rule in _rules()}
    done = _promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query (Grafana's variables substituted) as a recording rule: promtool parses them all."""
    queries = []
    for n, (_, expr) in enumerate(_dashboard_queries(json.loads(DASHBOARD.read_text()))):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        queries.append({"record": f"dashboard:query_{n}", "expr": expr})
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": queries}]}))
    done = _promtool("check", "rules", str(checked))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_readme_scrape_configuration_is_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    (config_text,) = [b for b in blocks if "scrape_configs" in b]
    config = yaml.safe_load(config_text)
    (job,) = config["scrape_configs"]
    assert (job["job_name"], job["metrics_path"]) == ("pgfleet", "/api/metrics")
    assert job["authorization"]["type"] == "Bearer"
    assert 'up{job="pgfleet"}' in RULES.read_text()  # the rules watch the job the README names
    config["rule_files"] = [str(RULES)]
    token = tmp_path / "pgfleet.token"
    token.write_text("token")
    job["authorization"]["credentials_file"] = str(token)
    written = tmp_path / "prometheus.yml"
    written.write_text(yaml.safe_dump(config))
    done = _promtool("check", "config", str(written))
    assert done.returncode == 0, done.stdout + done.stderr
