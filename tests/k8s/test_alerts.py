"""The chart's Prometheus alert rules, unit-tested with Prometheus' own rule engine (`promtool`).

The PrometheusRule is rendered by helm from the chart, its rule groups become a rules file, and
`promtool check rules` validates it. `promtool test rules` then replays synthetic series through the
real rule evaluator, minute by minute, for each alert: a situation in which it must fire (with the
exact labels and summary it must carry, and only after its `for:`), and healthy situations in which
it must stay silent (low error rates, probes that fail, another namespace's trouble, no traffic).
A rule deliberately broken in a handful of ways (threshold, selector, `for:`, grouping, comparison)
must make those tests fail, so they are shown to test something.

Needs helm and promtool from `make k8s-tools`; no cluster.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import BIN_DIR, HELM, STAMP_DIR, pinned_versions
from tests.support import require

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "shipyard"
PROMTOOL = BIN_DIR / "promtool"
RULE_TEMPLATE = "templates/prometheusrule.yaml"

# The thresholds the scenarios below are written against (the chart's defaults, set explicitly so
# that a change of default does not silently move what these tests prove).
THRESHOLDS: dict[str, Any] = {
    "errorRatio": 0.05,
    "latencyP99Seconds": 0.5,
    "contractViolationRatio": 0.1,
    "entityNotFoundRatio": 0.2,
    "missingFeatureRatio": 0.3,
    "maxModelAgeDays": 30,
}
# What issue #11 asks the alerts to cover, and the alert that does.
REQUIRED = {
    "error rate": "ShipyardHighErrorRatio",
    "latency": "ShipyardHighLatency",
    "model age": "ShipyardModelTooOld",
    "contract violations": "ShipyardContractViolations",
    "missing features": "ShipyardFeatureValuesMissing",
    "feature-store errors": "ShipyardFeatureStoreErrors",
}


# --- tools (shared with test_dashboard.py) -------------------------------------------------------------


def tool_missing(name: str, path: Path, version_key: str) -> str | None:
    """Why `make k8s-tools`' build of `name` cannot be used (absent or another version), else None."""
    version = pinned_versions()[version_key]
    stamp = STAMP_DIR / name
    built = stamp.read_text().split()[0] if stamp.is_file() else None
    if path.exists() and built == version:
        return None
    return (
        f"{name} {version} is not built" + (f" (found {built})" if built else "") + ": run `make k8s-tools`"
    )


def require_helm() -> None:
    missing = tool_missing("helm", HELM, "HELM_VERSION")
    require(missing is None, missing or "")


def require_promtool() -> None:
    missing = tool_missing("promtool", PROMTOOL, "PROMETHEUS_VERSION")
    require(missing is None, missing or "")


def run(args: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def helm_template(home: Path, *args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart (release `shipyard`), as objects; helm's state kept under `home`."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run(
        [str(HELM), "template", "shipyard", str(CHART), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_rules(home: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prod scenario's PrometheusRule (with THRESHOLDS and `values` on top)."""
    overrides = {"metrics": {"prometheusRule": {"enabled": True, **THRESHOLDS}}}
    for key, value in (values or {}).items():
        overrides["metrics"]["prometheusRule"][key] = value
    path = home / "rule-values.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(overrides))
    docs = helm_template(
        home, "-f", str(CHART / "ci" / "prod-values.yaml"), "-f", str(path), "--show-only", RULE_TEMPLATE
    )
    assert [d["kind"] for d in docs] == ["PrometheusRule"]
    return docs[0]


def rules_file(rule: dict[str, Any], path: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file (what the operator hands Prometheus)."""
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def alerting_rules(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


# --- scenarios -------------------------------------------------------------------------------------------

V1 = "/v1/models/{model_name}:predict"
V2 = "/v2/models/{model_name}/infer"
READY = "/v2/health/ready"
MODEL = "ticket_routing"
POD = "shipyard-prod-predictor-7d9f-abcde"
OTHER_NS = "shipyard-staging"
MINUTES = 180  # every series spans three hours of one sample a minute
DAY = 86400


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    values: str  # promtool's expanding notation, one value a minute: "0+600x180" grows 10/s


def counter(name: str, per_second: float, **labels: str) -> Series:
    """A counter growing `per_second` (scraped by Prometheus: namespace/pod target labels included)."""
    return Series(name, labels, f"0+{per_second * 60:g}x{MINUTES}")


def gauge(name: str, values: str, **labels: str) -> Series:
    return Series(name, labels, values)


def requests(per_second: float, code: str = "200", endpoint: str = V1, **labels: str) -> Series:
    protocol = "v2" if endpoint.startswith("/v2/") else "v1"
    return counter(
        "shipyard_requests_total", per_second, protocol=protocol, endpoint=endpoint, code=code, **labels
    )


def latency(per_second_under: Mapping[str, float], endpoint: str = V1) -> list[Series]:
    """shipyard_request_duration_seconds buckets: requests per second at or under each bound."""
    protocol = "v2" if endpoint.startswith("/v2/") else "v1"
    method = "GET" if endpoint == READY else "POST"
    return [
        counter(
            "shipyard_request_duration_seconds_bucket",
            rate,
            protocol=protocol,
            endpoint=endpoint,
            method=method,
            le=le,
        )
        for le, rate in per_second_under.items()
    ]


def predictions(per_second: float) -> list[Series]:
    """Predicted rows, split 60/40 over two classes."""
    return [
        counter("shipyard_predictions_total", per_second * 0.6, model=MODEL, version="v3", label="IT"),
        counter("shipyard_predictions_total", per_second * 0.4, model=MODEL, version="v3", label="HR"),
    ]


@dataclass(frozen=True)
class Scenario:
    alert: str
    title: str
    series: tuple[Series, ...]
    fires_at: tuple[str, ...] = ()  # eval times at which the alert fires ...
    silent_at: tuple[str, ...] = ()  # ... and at which it must not
    alert_labels: tuple[dict[str, str], ...] = ({},)  # labels of each firing alert besides severity


def scenarios() -> list[Scenario]:
    bad_latency = {"0.1": 5, "0.5": 8, "1": 10, "+Inf": 10}  # p99 ~0.98 s
    good_latency = {"0.1": 9.95, "0.5": 10, "1": 10, "+Inf": 10}  # p99 ~0.1 s
    day = DAY
    return [
        # -- error ratio: 5xx over prediction requests, 5m window, for 10m
        Scenario(
            "ShipyardHighErrorRatio",
            "9% of V1 and V2 predictions answer 503",
            (requests(10), requests(0.5, "503"), requests(0.5, "503", V2)),
            fires_at=("20m", "2h"),
            silent_at=("5m",),  # pending: not yet 10m over the threshold
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "9% of predictions fail among many successful probes",
            (requests(10), requests(1, "503"), requests(20, "200", READY), requests(5, "200", "/v2/models")),
            fires_at=("20m",),
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "2% of predictions answer 5xx",
            (requests(10), requests(0.2, "500")),
            silent_at=("20m", "2h"),
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "readiness probes answer 503 while predictions succeed",
            (requests(10), requests(5, "503", READY)),
            silent_at=("20m", "2h"),
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "another namespace's predictor fails",
            (requests(10), requests(10, "503", namespace=OTHER_NS)),
            silent_at=("20m", "2h"),
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "no traffic at all",
            (Series("shipyard_requests_total", {"endpoint": V1, "code": "200"}, f"0x{MINUTES}"),),
            silent_at=("20m", "2h"),
        ),
        # -- latency: p99 of prediction requests, 5m window, for 10m
        Scenario(
            "ShipyardHighLatency",
            "predictions take ~1 s at p99",
            tuple(latency(bad_latency)),
            fires_at=("20m", "2h"),
            silent_at=("5m",),
        ),
        Scenario(
            "ShipyardHighLatency",
            "predictions take ~0.1 s at p99",
            tuple(latency(good_latency)),
            silent_at=("20m", "2h"),
        ),
        Scenario(
            "ShipyardHighLatency",
            "slow readiness probes, fast predictions",
            tuple(latency(good_latency) + latency(bad_latency, READY)),
            silent_at=("20m", "2h"),
        ),
        # -- contract violations: rejected over prediction requests, 15m window, for 15m
        Scenario(
            "ShipyardContractViolations",
            "20% of the prediction requests break the contract, probes pass",
            (
                requests(20, "200", READY),
                requests(8),
                requests(2, "400"),
                counter("shipyard_contract_violations_total", 2, field="ticket_text", rule="max_length"),
            ),
            fires_at=("40m", "2h"),
            silent_at=("10m",),
        ),
        Scenario(
            "ShipyardContractViolations",
            "5% of the requests break the contract",
            (
                requests(9.5),
                requests(0.5, "400"),
                counter("shipyard_contract_violations_total", 0.5, field="customer_id", rule="type"),
            ),
            silent_at=("40m", "2h"),
        ),
        # -- unknown entities: rows without online features over predicted rows
        Scenario(
            "ShipyardEntitiesNotFound",
            "30% of the rows have no online features",
            (*predictions(10), counter("shipyard_entity_not_found_total", 3, model=MODEL)),
            fires_at=("40m", "2h"),
            silent_at=("10m",),
        ),
        Scenario(
            "ShipyardEntitiesNotFound",
            "10% of the rows have no online features",
            (*predictions(10), counter("shipyard_entity_not_found_total", 1, model=MODEL)),
            silent_at=("40m", "2h"),
        ),
        # -- missing feature values: per feature, over predicted rows
        Scenario(
            "ShipyardFeatureValuesMissing",
            "half the rows lack region, 10% days_since_last_payment",
            (
                *predictions(10),
                counter("shipyard_feature_missing_total", 5, feature="region"),
                counter("shipyard_feature_missing_total", 1, feature="days_since_last_payment"),
            ),
            fires_at=("40m", "2h"),
            silent_at=("10m",),
            alert_labels=({"feature": "region"},),
        ),
        Scenario(
            "ShipyardFeatureValuesMissing",
            "10% of the rows lack each of two features",
            (
                *predictions(10),
                counter("shipyard_feature_missing_total", 1, feature="region"),
                counter("shipyard_feature_missing_total", 1, feature="days_since_last_payment"),
            ),
            silent_at=("40m", "2h"),
        ),
        # -- feature store: any failed lookup for 5m
        Scenario(
            "ShipyardFeatureStoreErrors",
            "online lookups keep failing",
            (counter("shipyard_feature_store_errors_total", 0.2, store="redis"),),
            fires_at=("10m", "2h"),
            silent_at=("3m",),
        ),
        Scenario(
            "ShipyardFeatureStoreErrors",
            "every lookup succeeds",
            (
                counter("shipyard_feature_store_errors_total", 0, store="redis"),
                counter("shipyard_feature_lookup_duration_seconds_count", 10, store="redis"),
            ),
            silent_at=("10m", "2h"),
        ),
        Scenario(
            "ShipyardFeatureStoreErrors",
            "errors stopped an hour ago (the counter keeps its old value)",
            (
                Series(
                    "shipyard_feature_store_errors_total",
                    {"store": "redis"},
                    f"0+12x60 720x{MINUTES - 60}",
                ),
            ),
            fires_at=("30m",),
            silent_at=("90m", "2h"),
        ),
        # -- model age: past maxModelAgeDays (30) for an hour
        Scenario(
            "ShipyardModelTooOld",
            "the served model was trained 31 days ago",
            (gauge("shipyard_model_age_seconds", f"{31 * day}+60x{MINUTES}", model=MODEL, version="v3"),),
            fires_at=("90m",),
            silent_at=("30m",),  # pending: not yet an hour
        ),
        Scenario(
            "ShipyardModelTooOld",
            "the served model was trained 29 days ago",
            (gauge("shipyard_model_age_seconds", f"{29 * day}+60x{MINUTES}", model=MODEL, version="v3"),),
            silent_at=("90m", "2h"),
        ),
        # -- readiness: a pod's model not loaded for 10m
        Scenario(
            "ShipyardModelNotReady",
            "one pod's model never becomes ready",
            (
                gauge("shipyard_model_ready", f"0x{MINUTES}", model=MODEL),
                gauge("shipyard_model_ready", f"1x{MINUTES}", model=MODEL, pod=POD + "-2"),
            ),
            fires_at=("15m",),
            silent_at=("5m",),
            alert_labels=({"model": MODEL, "pod": POD},),
        ),
        Scenario(
            "ShipyardModelNotReady",
            "the model loads within three minutes",
            (gauge("shipyard_model_ready", f"0 0 0 1x{MINUTES}", model=MODEL),),
            silent_at=("15m", "2h"),
        ),
        # -- scrape: no predictor answers
        Scenario(
            "ShipyardPredictorDown",
            "no predictor answers its scrape",
            (gauge("up", f"0x{MINUTES}", service="shipyard-prod-predictor"),),
            fires_at=("10m",),
            silent_at=("3m",),
        ),
        Scenario(
            "ShipyardPredictorDown",
            "one of two predictors is down",
            (
                gauge("up", f"0x{MINUTES}", service="shipyard-prod-predictor"),
                gauge("up", f"1x{MINUTES}", service="shipyard-prod-predictor", pod=POD + "-2"),
            ),
            silent_at=("10m", "2h"),
        ),
        # -- request log: dropped records
        Scenario(
            "ShipyardRequestLogDropping",
            "the request log drops records",
            (counter("shipyard_request_log_records_total", 0.5, outcome="dropped"),),
            fires_at=("25m",),
            silent_at=("5m",),
        ),
        Scenario(
            "ShipyardRequestLogDropping",
            "the request log writes every record",
            (counter("shipyard_request_log_records_total", 10, outcome="written"),),
            silent_at=("25m", "2h"),
        ),
        Scenario(
            "ShipyardRequestLogNotShipped",
            "object storage refuses every upload",
            (counter("shipyard_request_log_uploads_total", 0.05, outcome="failed"),),
            fires_at=("50m",),
            silent_at=("20m",),
        ),
        Scenario(
            "ShipyardRequestLogNotShipped",
            "every closed file is shipped",
            (counter("shipyard_request_log_uploads_total", 0.05, outcome="uploaded"),),
            silent_at=("50m", "2h"),
        ),
    ]


def healthy_server() -> tuple[Series, ...]:
    """Every metric the alerts read, as a healthy, busy predictor exports it."""
    return (
        requests(10),
        requests(0.05, "503"),
        requests(0.3, "400"),
        requests(1, "200", READY),
        *latency({"0.025": 9.5, "0.1": 10, "0.5": 10, "+Inf": 10}),
        *predictions(10),
        counter("shipyard_contract_violations_total", 0.3, field="ticket_text", rule="max_length"),
        counter("shipyard_entity_not_found_total", 0.2, model=MODEL),
        counter("shipyard_feature_missing_total", 0.5, feature="days_since_last_payment"),
        counter("shipyard_feature_store_errors_total", 0, store="redis"),
        gauge("shipyard_model_age_seconds", f"{3 * DAY}+60x{MINUTES}", model=MODEL, version="v3"),
        gauge("shipyard_model_ready", f"1x{MINUTES}", model=MODEL),
        gauge("up", f"1x{MINUTES}", service="shipyard-prod-predictor"),
        counter("shipyard_request_log_records_total", 10, outcome="written"),
        counter("shipyard_request_log_uploads_total", 0.01, outcome="uploaded"),
    )


def series_line(series: Series, namespace: str) -> dict[str, str]:
    labels = {"namespace": namespace, "pod": POD, **series.labels}
    body = ", ".join(f"{k}={_quote(v)}" for k, v in labels.items())
    return {"series": f"{series.name}{{{body}}}", "values": series.values}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def expected_alert(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The alert as Prometheus would send it: the rule's labels and its summary with $labels filled."""

    def fill(text: str) -> str:
        return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], text)

    return {
        "exp_labels": {**labels, **rule.get("labels", {})},
        "exp_annotations": {k: fill(v) for k, v in rule.get("annotations", {}).items()},
    }


def promtool_tests(rule: dict[str, Any], cases: list[Scenario], rules_path: Path) -> dict[str, Any]:
    """A `promtool test rules` file: one test group per scenario."""
    namespace = rule["metadata"]["namespace"]
    alerts = alerting_rules(rule)
    groups = []
    for case in cases:
        checks: list[dict[str, Any]] = []
        for at in case.fires_at:
            exp = [expected_alert(alerts[case.alert], labels) for labels in case.alert_labels]
            checks.append({"eval_time": at, "alertname": case.alert, "exp_alerts": exp})
        for at in case.silent_at:
            checks.append({"eval_time": at, "alertname": case.alert, "exp_alerts": []})
        groups.append(
            {
                "name": f"{case.alert}: {case.title}",
                "interval": "1m",
                "input_series": [series_line(s, namespace) for s in case.series],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": groups}


def run_promtool_tests(
    rule: dict[str, Any], cases: list[Scenario], workdir: Path
) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = rules_file(rule, workdir / "rules.yaml")
    test_path = workdir / "tests.yaml"
    test_path.write_text(yaml.safe_dump(promtool_tests(rule, cases, rules_path), sort_keys=False))
    return run([PROMTOOL, "test", "rules", test_path])


# --- tests -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_helm()
    require_promtool()
    return render_rules(tmp_path_factory.mktemp("helm"))


def test_rules_pass_promtool_check(rule: dict[str, Any], tmp_path: Path) -> None:
    path = rules_file(rule, tmp_path / "rules.yaml")
    result = run([PROMTOOL, "check", "rules", "--lint=all", "--lint-fatal", path])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules(rule))} rules found" in result.stdout


def test_every_alert_is_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    alerts = alerting_rules(rule)
    assert set(REQUIRED.values()) <= set(alerts), "an alert the issue asks for is missing"
    cases = scenarios()
    assert {c.alert for c in cases} == set(alerts)
    for name in alerts:
        assert any(c.alert == name and c.fires_at for c in cases), f"{name}: no scenario where it fires"
        assert any(c.alert == name and not c.fires_at for c in cases), f"{name}: no healthy scenario"
    for name, r in alerts.items():
        assert r["labels"]["severity"] in {"warning", "critical"}, name
        assert r["annotations"]["summary"], name
        assert "for" in r, f"{name}: fires on a single evaluation"


@pytest.mark.parametrize("alert", sorted({c.alert for c in scenarios()}))
def test_alert_fires_when_it_should_and_only_then(alert: str, rule: dict[str, Any], tmp_path: Path) -> None:
    result = run_promtool_tests(rule, [c for c in scenarios() if c.alert == alert], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_healthy_server_raises_no_alert(rule: dict[str, Any], tmp_path: Path) -> None:
    series = healthy_server()
    cases = [
        Scenario(name, "a healthy server", series, silent_at=("20m", "90m", "3h"))
        for name in alerting_rules(rule)
    ]
    # One promtool test group per alert, all on the same healthy series.
    result = run_promtool_tests(rule, cases, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    require_helm()
    require_promtool()
    rule = render_rules(tmp_path / "helm", {"maxModelAgeDays": 7, "errorRatio": 0.5})
    day = DAY
    cases = [
        Scenario(
            "ShipyardModelTooOld",
            "trained 8 days ago, policy 7 days",
            (gauge("shipyard_model_age_seconds", f"{8 * day}+60x{MINUTES}", model=MODEL, version="v3"),),
            fires_at=("90m",),
        ),
        Scenario(
            "ShipyardHighErrorRatio",
            "9% errors, threshold 50%",
            (requests(10), requests(1, "503")),
            silent_at=("20m", "2h"),
        ),
    ]
    result = run_promtool_tests(rule, cases, tmp_path / "promtool")
    assert result.returncode == 0, result.stdout + result.stderr


# Each way of breaking a rule, and the alert whose tests must then fail.
Mutation = Callable[[dict[str, Any]], None]


def _expr(alert: str, old: str, new: str) -> tuple[str, Mutation]:
    def mutate(r: dict[str, Any]) -> None:
        assert old in r["expr"], (alert, old, r["expr"])
        r["expr"] = r["expr"].replace(old, new)

    return alert, mutate


def _drop_for(alert: str) -> tuple[str, Mutation]:
    return alert, lambda r: r.pop("for")


_PREDICT_DENOMINATOR = (
    '/ sum(rate(shipyard_requests_total{namespace="shipyard-prod", endpoint=~".*:predict|.*/infer"}'
)
_ALL_DENOMINATOR = '/ sum(rate(shipyard_requests_total{namespace="shipyard-prod"}'
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "error threshold raised tenfold": _expr("ShipyardHighErrorRatio", "> 0.05", "> 0.5"),
    "error ratio counts health probes": _expr(
        "ShipyardHighErrorRatio", ', endpoint=~".*:predict|.*/infer"', ""
    ),
    "latency reads p50 instead of p99": _expr(
        "ShipyardHighLatency", "histogram_quantile(0.99", "histogram_quantile(0.5"
    ),
    "contract comparison inverted": _expr("ShipyardContractViolations", "> 0.1", "< 0.1"),
    "contract ratio over probes too": _expr(
        "ShipyardContractViolations", _PREDICT_DENOMINATOR, _ALL_DENOMINATOR
    ),
    "error ratio over probes too": _expr("ShipyardHighErrorRatio", _PREDICT_DENOMINATOR, _ALL_DENOMINATOR),
    "missing features not per feature": _expr("ShipyardFeatureValuesMissing", "sum by (feature) (", "sum("),
    "feature-store errors alert on the counter, not its rate": _expr(
        "ShipyardFeatureStoreErrors", "sum(rate(", "sum(max_over_time("
    ),
    "model age without its hour of patience": _drop_for("ShipyardModelTooOld"),
    "model age compared in days as seconds": _expr("ShipyardModelTooOld", "> 2592000", "> 30"),
    "latency over probes too": _expr("ShipyardHighLatency", ', endpoint=~".*:predict|.*/infer"', ""),
    "readiness not per pod": _expr("ShipyardModelNotReady", "min by (pod, model)", "min by (model)"),
    "down when any predictor is down": _expr("ShipyardPredictorDown", "sum(up", "min(up"),
    "request log alerts on written records": _expr("ShipyardRequestLogDropping", ', outcome="dropped"', ""),
    "shipping alerts on uploaded files": _expr("ShipyardRequestLogNotShipped", ', outcome="failed"', ""),
    "entities threshold off by ten": _expr("ShipyardEntitiesNotFound", "> 0.2", "> 0.02"),
    "entities-not-found over requests that include probes": _expr(
        "ShipyardEntitiesNotFound", "shipyard_predictions_total", "shipyard_requests_total"
    ),
}


def test_every_alert_has_a_breakage_its_tests_catch(rule: dict[str, Any]) -> None:
    assert {alert for alert, _ in MUTATIONS.values()} == set(alerting_rules(rule))


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_broken_rule_fails_its_tests(mutation: str, rule: dict[str, Any], tmp_path: Path) -> None:
    alert, mutate = MUTATIONS[mutation]
    broken = copy.deepcopy(rule)
    mutate(alerting_rules(broken)[alert])
    cases = [c for c in scenarios() if c.alert == alert]
    check = run([PROMTOOL, "check", "rules", rules_file(broken, tmp_path / "broken.yaml")])
    assert check.returncode == 0, f"the mutation should still parse: {check.stdout}{check.stderr}"
    result = run_promtool_tests(broken, cases, tmp_path / "promtool")
    assert result.returncode != 0, f"promtool passed a broken {alert} ({mutation}):\n{result.stdout}"
    assert alert in result.stdout + result.stderr
