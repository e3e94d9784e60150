"""Alert rules (checked and unit-tested by promtool) and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.scan.metrics import RunMetrics, run_registry

INFRA = Path(__file__).resolve().parent.parent / "infra"
PROMETHEUS = INFRA / "prometheus"
GRAFANA = INFRA / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "deeptrust-scan.json"
# PromQL words that look like metric names; functions are told apart by the "(" after them.
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "group_left", "group_right", "inf", "nan"}


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install prometheus")
    done = subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr):
        is_call = expr[match.end() :].lstrip().startswith("(")
        if not is_call and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def pushed_names() -> set[str]:
    """The sample names one push of a run sends (every optional metric present)."""
    run = RunMetrics(
        model_version="v1",
        duration_s=60.0,
        videos={"listed": 6, "skipped": 1, "scored": 3, "matched": 1, "flagged": 2, "error": 1},
        errors_by_reason={"unreadable": 1},
        last_success=(datetime(2024, 6, 1), "v1"),
    )
    text = generate_latest(run_registry(run)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@pytest.mark.e2e
def test_alert_rules_pass_promtool_checks_and_unit_tests():
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", "alerts.yml")
    promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


@pytest.mark.unit
def test_metric_names_are_read_from_promql():
    expr = (
        'sum without (outcome) (rate(a_total{job="x", outcome=~"s|e"}[5m] offset 1d))'
        " / on (job) group_left b > 2 * avg_over_time(c[7d]) and time() - d > 1.5e3"
    )
    assert metric_names(expr) == {"a_total", "b", "c", "d"}


@pytest.mark.unit
def test_dashboard_and_alerts_query_only_what_the_scan_pushes():
    pushed = pushed_names()
    for expr in dashboard_exprs() + alert_exprs():
        names = metric_names(expr)
        assert names, expr
        assert names <= pushed, f"{expr} reads {names - pushed}, which the scan never pushes"
    queried = set().union(*map(metric_names, dashboard_exprs()))
    assert queried == pushed, "every pushed metric has a panel"


@pytest.mark.unit
def test_the_dashboard_is_provisioned_with_a_stable_uid_and_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "deeptrust-scan"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variable = dashboard["templating"]["list"][0]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources)
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert variable["current"]["value"] == sources["datasources"][0]["uid"]
    providers = yaml.safe_load((provisioning / "dashboards" / "deeptrust.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def watcher_names() -> set[str]:
    """The sample names a watcher serves (every labelled series present)."""
    from prometheus_client import CollectorRegistry

    from pipelines.watch import metrics as watch_metrics

    registry = CollectorRegistry()
    for metric in (watch_metrics.HEARTBEAT, watch_metrics.QUEUE_AGE, watch_metrics.UPLOAD_TO_ROW):
        registry.register(metric)
    text = generate_latest(registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.e2e
def test_watcher_alert_rules_pass_promtool_checks_and_unit_tests():
    assert "SUCCESS: 4 rules found" in promtool("check", "rules", "watch_alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "watch_alerts_test.yml")


@pytest.mark.unit
def test_watcher_alerts_query_only_what_the_watcher_serves():
    groups = yaml.safe_load((PROMETHEUS / "watch_alerts.yml").read_text())["groups"]
    served = watcher_names()
    for rule in (rule for group in groups for rule in group["rules"]):
        names = metric_names(rule["expr"])
        assert names, rule["expr"]
        assert names <= served, f"{rule['expr']} reads {names - served}, which no watcher serves"
