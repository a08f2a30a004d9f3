"""The chart's Grafana dashboard and alert rules name only what the model server really exports.

A real model server (`serving.process.ServerProcess`, a small trained ticket-routing version) is
started, sent good, unknown-entity and contract-breaking requests and, once its feature store is
broken, one it answers 503 (a labelled metric appears from its first sample on), and scraped: its
/metrics, parsed with prometheus_client's parser, says which series exist (counters end in `_total`, classic
histograms are `_bucket`/`_sum`/`_count`, an Info is `_info`) and which labels they carry. Every
metric selector in the dashboard's queries, its variables and the alert rules must be one of them
(or `up`, which Prometheus writes per target), with labels the server or the scrape gives it. Every
query must parse as PromQL: `promtool check rules` on a throwaway recording-rule file of them.
The ConfigMap the chart ships the dashboard in is what the Grafana sidecar loads.

Needs helm and promtool from `make k8s-tools`, and trains a small model (~30 s on 2 cores).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serving_stack import build_stack, known_entities, start_server
from tests.k8s.cluster import HELM
from tests.k8s.test_alerts import (
    CHART,
    PROMTOOL,
    alerting_rules,
    helm_template,
    render_rules,
    require_helm,
    require_promtool,
    run,
)

DASHBOARD = CHART / "dashboards" / "shipyard.json"
DASHBOARD_TEMPLATE = "templates/configmap-dashboard.yaml"
SERVICE_MONITOR_TEMPLATE = "templates/servicemonitor.yaml"
# Series Prometheus writes itself for every scrape target.
PROMETHEUS_SERIES = {"up"}
# Labels a Prometheus Operator ServiceMonitor scrape puts on every series of the target.
TARGET_LABELS = {"namespace", "service", "pod", "container", "job", "instance", "endpoint"}
# What the panels must show (issue #11), by a word each title contains.
REQUIRED_PANELS = (
    "request rate",
    "error ratio",
    "latency p50 / p99",
    "predictions by class",
    "contract violations",
    "entity not found",
    "feature store errors",
    "model age",
    "readiness",
    "missing feature",
)
# Grafana's variables, as a query would read once Grafana has filled them in.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "30s",
    "$__range": "6h",
    "${datasource}": "prometheus",
    "$namespace": "shipyard-prod",
}


# --- the exported metrics of a real server -----------------------------------------------------------


@dataclass
class Exported:
    """Series names the server exports, each with the label names it carries."""

    labels: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, labels: set[str]) -> None:
        self.labels.setdefault(name, set()).update(labels)


# The series names of one metric family, by its type (prometheus_client's text format 0.0.4).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def exported_series(text: str) -> Exported:
    out = Exported()
    for family in text_string_to_metric_families(text):
        assert family.type in SUFFIXES, f"{family.name}: unexpected type {family.type}"
        for suffix in SUFFIXES[family.type]:
            out.add(family.name + suffix, set())
        for sample in family.samples:
            # A `_created` sample would be a series too, but serving/metrics.py disables them.
            out.add(sample.name, set(sample.labels))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    require_helm()
    require_promtool()
    root = tmp_path_factory.mktemp("metrics-server")
    stack = build_stack(root / "stack")
    # Shipping to a file:// store (the same ObjectStore code as s3://) exports the upload counter.
    shipped = f"file://{root / 'shipped'}"
    server = start_server(
        stack, root / "server", request_log_upload=shipped, request_log_rollover_seconds=0.3
    )
    try:
        known = known_entities(stack, 2)
        ok = server.v1(
            [
                {"customer_id": known[0], "ticket_text": "refund for invoice 12"},
                {"customer_id": known[1], "ticket_text": "parcel lost in the warehouse"},
                {"customer_id": 9_000_000_001, "ticket_text": "cannot log in"},  # unknown entity
            ]
        )
        assert ok.status_code == 200, ok.text
        bad = server.v1([{"customer_id": known[0], "ticket_text": "z" * 10_000}])
        assert bad.status_code == 400, bad.text
        # A labelled metric is exported from its first sample on: make the feature store fail too
        # (the SQLite online store's file overwritten in place: every lookup now raises).
        online = stack.repo / "data" / "online_store.db"
        online.write_bytes(b"not a database" * (online.stat().st_size // 14 + 1))
        down = server.v1([{"customer_id": known[0], "ticket_text": "refund"}])
        assert down.status_code == 503 and down.json()["code"] == "feature_store_unavailable", down.text
        with httpx.Client(base_url=server.url, timeout=30) as c:
            deadline = time.monotonic() + 30
            while True:  # the request log counts its records when it flushes them (every 0.2 s here)
                response = c.get("/metrics")
                assert response.status_code == 200
                counted = ("shipyard_request_log_records_total{", "shipyard_request_log_uploads_total{")
                if all(name in response.text for name in counted) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        yield exported_series(response.text)
    finally:
        server.stop()


# --- PromQL: metric selectors, the labels they match and group by --------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"\"")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


@dataclass(frozen=True)
class Query:
    """What a PromQL expression reads: each selector's metric and matcher labels, grouping labels."""

    selectors: tuple[tuple[str, frozenset[str]], ...]
    grouping: frozenset[str]


def fill_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in _STRING.sub('""', expr), f"an unknown Grafana variable in {expr!r}"
    return expr


def parse_query(expr: str) -> Query:
    text = _STRING.sub('""', expr)
    grouping: set[str] = set()
    for m in _GROUPING.finditer(text):
        grouping |= {label.strip() for label in m.group(1).split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    selectors: list[tuple[str, frozenset[str]]] = []

    def selector(m: re.Match[str]) -> str:
        assert m.group(1), f"a selector without a metric name in {expr!r}"
        selectors.append((m.group(1), frozenset(_MATCHER.findall(m.group(2)))))
        return " "

    text = _RANGE.sub(" ", _SELECTOR.sub(selector, text))
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if not call and name.lower() not in _KEYWORDS:
            selectors.append((name, frozenset()))
    return Query(tuple(selectors), frozenset(grouping))


def problems(expr: str, exported: Exported) -> list[str]:
    """What in `expr` the server does not export: unknown series, labels it does not carry."""
    query = parse_query(expr)
    found: list[str] = []
    available = set(TARGET_LABELS)
    for name, matchers in query.selectors:
        if name in PROMETHEUS_SERIES:
            labels: set[str] = set()
        elif name in exported.labels:
            labels = exported.labels[name]
        else:
            found.append(f"{name} is not exported")
            continue
        available |= labels
        for label in sorted(matchers - labels - TARGET_LABELS):
            found.append(f"{name} has no label {label}")
    found += [
        f"no series here has a label {label} to group by" for label in sorted(query.grouping - available)
    ]
    return found


# --- the dashboard's queries ------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries(board: dict[str, Any]) -> dict[str, str]:
    """Every target's expression, by "<panel title> / <refId>"."""
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }


def variable_queries(board: dict[str, Any]) -> dict[str, str]:
    """label_values(<selector>, <label>) of each query variable, as the selector plus the label."""
    out = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, f"variable {var['name']}: only label_values(selector, label) is used here: {query}"
        out[f"${var['name']}"] = f"count by ({m.group(2)}) ({m.group(1)})"
    return out


def rule_queries(rule: dict[str, Any]) -> dict[str, str]:
    return {name: r["expr"] for name, r in alerting_rules(rule).items()}


def check_parses(queries: dict[str, str], path: Path) -> None:
    """`promtool check rules` on a recording-rule file holding each query."""
    records = [
        {"record": f"shipyard:query_{i}", "expr": fill_variables(expr)}
        for i, expr in enumerate(queries.values())
    ]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, sort_keys=False))
    result = run([PROMTOOL, "check", "rules", path])
    names = "\n".join(f"shipyard:query_{i}: {k}" for i, k in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{names}"
    assert f"SUCCESS: {len(records)} rules found" in result.stdout


# --- tests --------------------------------------------------------------------------------------------------


def test_the_server_exports_what_the_monitoring_reads(exported: Exported) -> None:
    # The scrape itself: suffixes by type, and the labels the requests above created.
    names = exported.labels
    assert "shipyard_requests_total" in names and "shipyard_requests" not in names
    assert {"shipyard_request_duration_seconds_bucket", "shipyard_request_duration_seconds_count"} <= set(
        names
    )
    assert "shipyard_request_duration_seconds" not in names  # a classic histogram has no bare series
    assert "le" in names["shipyard_request_duration_seconds_bucket"]
    assert {"protocol", "endpoint", "code"} <= names["shipyard_requests_total"]
    assert {"model", "version", "label"} <= names["shipyard_predictions_total"]
    assert {"field", "rule"} <= names["shipyard_contract_violations_total"]
    assert "shipyard_model_info" in names and "shipyard_model_age_seconds" in names
    assert names["shipyard_feature_store_errors_total"] == {"store"}
    assert names["shipyard_request_log_records_total"] == {"outcome"}
    assert names["shipyard_request_log_uploads_total"] == {"outcome"}


def test_dashboard_queries_name_only_exported_metrics(exported: Exported) -> None:
    board = dashboard()
    queries = {**panel_queries(board), **variable_queries(board)}
    assert len(queries) >= 15
    found = {where: p for where, expr in queries.items() if (p := problems(fill_variables(expr), exported))}
    assert not found, json.dumps(found, indent=2)


def test_alert_rules_name_only_exported_metrics(exported: Exported, tmp_path: Path) -> None:
    rules = rule_queries(render_rules(tmp_path))
    found = {alert: p for alert, expr in rules.items() if (p := problems(expr, exported))}
    assert not found, json.dumps(found, indent=2)


def test_the_check_catches_names_the_server_does_not_export(exported: Exported) -> None:
    # The mistakes this guards against, each on a real exported name.
    assert problems("rate(shipyard_requests[5m])", exported) == ["shipyard_requests is not exported"]
    assert problems("shipyard_request_duration_seconds", exported) == [
        "shipyard_request_duration_seconds is not exported"
    ]
    assert problems("shipyard_model_age_seconds_total", exported) == [
        "shipyard_model_age_seconds_total is not exported"
    ]
    assert problems('sum by (class) (rate(shipyard_predictions_total{namespace="x"}[5m]))', exported) == [
        "no series here has a label class to group by"
    ]
    assert problems('shipyard_model_ready{status="ok"}', exported) == [
        "shipyard_model_ready has no label status"
    ]
    assert problems(
        'sum by (le) (rate(shipyard_request_duration_seconds_bucket{code="200"}[5m]))', exported
    ) == ["shipyard_request_duration_seconds_bucket has no label code"]
    # ... and the parser reads past strings, functions, groupings, ranges and keywords.
    assert parse_query(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"b{c}", y!="by (z)"}[5m] offset 1h)))'
        " / on () group_left () sum(b) > bool 0.5 and c"
    ) == Query(
        (("a_bucket", frozenset({"x", "y"})), ("b", frozenset()), ("c", frozenset())), frozenset({"le"})
    )


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    require_promtool()
    board = dashboard()
    check_parses({**panel_queries(board), **variable_queries(board)}, tmp_path / "dashboard.yaml")
    # and the check can fail:
    with pytest.raises(AssertionError, match="shipyard:query_0"):
        check_parses({"broken": "sum(rate(shipyard_requests_total[5m]) /"}, tmp_path / "broken.yaml")


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    board = dashboard()
    titles = [p["title"].lower() for p in board["panels"]]
    for wanted in REQUIRED_PANELS:
        assert any(wanted in t for t in titles), f"no panel for {wanted}: {titles}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            if "rate(" in target["expr"]:
                assert "[$__rate_interval]" in target["expr"], (panel["title"], "use $__rate_interval")
            assert 'namespace="$namespace"' in target["expr"], (panel["title"], "per environment")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"


def test_chart_ships_the_dashboard_for_the_grafana_sidecar(tmp_path: Path) -> None:
    require_helm()
    prod = str(CHART / "ci" / "prod-values.yaml")
    staging = str(CHART / "ci" / "staging-values.yaml")
    off = helm_template(tmp_path, "-f", prod)
    assert not [d for d in off if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]

    def render(values: str, *extra: str) -> dict[str, Any]:
        docs = helm_template(
            tmp_path,
            "-f",
            values,
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            *extra,
            "--show-only",
            DASHBOARD_TEMPLATE,
        )
        assert [d["kind"] for d in docs] == ["ConfigMap"]
        return docs[0]

    cm = render(prod, "--set", "metrics.grafanaDashboard.annotations.grafana_folder=Shipyard")
    assert cm["metadata"]["namespace"] == "shipyard-prod"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Shipyard"}
    [(key, text)] = cm["data"].items()
    assert key == "shipyard-shipyard-prod.json"
    shipped = json.loads(text)
    source = dashboard()
    assert (
        shipped["panels"] == source["panels"]
        and shipped["templating"]["list"][0] == source["templating"]["list"][0]
    )
    namespace = next(v for v in shipped["templating"]["list"] if v["name"] == "namespace")
    assert namespace["current"] == {"text": "shipyard-prod", "value": "shipyard-prod"}
    assert "shipyard-prod" in shipped["title"] and len(shipped["uid"]) <= 40
    other = json.loads(next(iter(render(staging)["data"].values())))
    assert other["uid"] != shipped["uid"], "two environments' dashboards in one Grafana must not collide"

    elsewhere = render(
        prod,
        "--set",
        "metrics.grafanaDashboard.namespace=monitoring",
        "--set",
        "metrics.grafanaDashboard.label=dash",
    )
    assert elsewhere["metadata"]["namespace"] == "monitoring"
    assert elsewhere["metadata"]["labels"]["dash"] == "1"


def test_dashboard_values_are_validated(tmp_path: Path) -> None:
    require_helm()
    result = run(
        [
            HELM,
            "template",
            "shipyard",
            CHART,
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--set",
            "metrics.grafanaDashboard.lable=x",
        ]
    )
    assert result.returncode != 0 and "lable" in result.stderr, result.stderr


def test_scraped_label_names_survive_the_service_monitor(exported: Exported, tmp_path: Path) -> None:
    """The server's `endpoint` label is also a label the operator's scrape sets (the port name): without
    honorLabels Prometheus renames the server's to `exported_endpoint` and no query here would match."""
    clashing = {label for labels in exported.labels.values() for label in labels} & TARGET_LABELS
    assert clashing == {"endpoint"}
    [sm] = helm_template(
        tmp_path, "-f", str(CHART / "ci" / "prod-values.yaml"), "--show-only", SERVICE_MONITOR_TEMPLATE
    )
    assert all(ep.get("honorLabels") is True for ep in sm["spec"]["endpoints"]), sm["spec"]["endpoints"]
