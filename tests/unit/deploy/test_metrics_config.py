"""The Prometheus and Grafana files in deploy/ against the metrics shared/metrics.py defines: every
metric a dashboard panel, a template variable or an alert rule names exists, every backorder_ metric
is on the dashboard, and the scrape configurations name the four services where they listen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shared import metrics
from shared.settings import SERVICE_PORTS, SERVICES

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))

# PromQL words that look like names but are not metrics: binary operators and modifiers. Functions
# and aggregations are recognised by the parenthesis that follows them.
PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers,
    ranges and grouping clauses are taken out, minus functions and operators."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)\s*(\()?", expr):
        name, call = match.groups()
        if call is None and name not in PROMQL_WORDS:
            names.add(name)
    return names


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])
        exprs += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        selector = re.match(r"\s*label_values\(\s*([^,)]+)", text)
        if selector:
            exprs.append(selector.group(1))
    return exprs


def rule_exprs() -> list[str]:
    exprs = []
    for path in (DEPLOY / "prometheus").glob("*.yml"):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            exprs += [str(rule["expr"]) for rule in group["rules"]]
    return exprs


def test_the_name_extraction_finds_names_and_only_names() -> None:
    expr = 'histogram_quantile(0.99, sum by (job, le) (rate(backorder_x_bucket{job=~"$job", a="b{c}"}[$__rate_interval])))'
    assert metric_names(expr) == {"backorder_x_bucket"}
    assert metric_names("a_total / on(job) group_left b and c offset 5m > 0") == {"a_total", "b", "c"}
    assert metric_names("topk(20, backorder_book_lines_waiting)") == {"backorder_book_lines_waiting"}


def test_dashboards_and_rules_refer_only_to_metrics_that_exist() -> None:
    defined = set().union(*metrics.series_by_family().values())
    exprs = [expr for path in DASHBOARDS for expr in dashboard_exprs(json.loads(path.read_text()))] + rule_exprs()
    used = {name for expr in exprs for name in metric_names(expr)}
    assert DASHBOARDS and rule_exprs()
    assert used - defined == set()
    assert len(used) >= 15


def test_every_backorder_metric_is_on_the_dashboard() -> None:
    used = {name for path in DASHBOARDS for expr in dashboard_exprs(json.loads(path.read_text())) for name in metric_names(expr)}
    families = {family: series for family, series in metrics.series_by_family().items() if family.startswith("backorder_")}
    assert len(families) >= 15
    assert [family for family, series in families.items() if not series & used] == []


def scrape_targets(config_file: str) -> dict[str, list[str]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / config_file).read_text())
    return {
        job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }


def test_compose_prometheus_scrapes_the_four_services_by_their_compose_names() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    targets = scrape_targets("prometheus.yml")
    assert set(targets) == set(SERVICES)
    for name in SERVICES:
        container_port = compose[name]["ports"][0].split(":")[1]
        assert targets[name] == [f"{name}:{container_port}"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose["prometheus"]["volumes"]


def test_local_prometheus_scrapes_the_ports_make_run_uses() -> None:
    targets = scrape_targets("prometheus.local.yml")
    assert targets == {name: [f"127.0.0.1:{SERVICE_PORTS[name]}"] for name in SERVICES}


def test_grafana_is_provisioned_with_the_prometheus_the_dashboard_uses() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {source["uid"] for source in sources if source["type"] == "prometheus"}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
        assert used and used <= uids
    provider = yaml.safe_load((provisioning / "dashboards" / "backorder.yml").read_text())["providers"][0]
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
