"""Monitoring: drift is found where it was injected and not on fresh undrifted samples, concept drift
shows as an accuracy drop on fresh labels, every decision rule fires on its own signal, and versions
whose reference statistics predate the stored quantiles are still monitored (PSI only, said so).

The data is a small synthetic population written as the model server's request log (JSON lines), so
the reader, the label join and the assessment run exactly as in the pipeline.
"""

from __future__ import annotations

import copy
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from shipyard import contract
from shipyard.errors import ReportError, SettingsError
from shipyard.evaluation import score
from shipyard.monitor_report import render_html
from shipyard.monitoring import (
    MonitoringSummary,
    VersionFacts,
    assess,
    collect_window,
    ks_against_quantiles,
    psi,
    read_request_log,
)
from shipyard.project import load_project
from shipyard.settings import MonitoringSettings, Settings
from shipyard.training import ModelInputs
from tests.projects.loan_default import PROJECT as LOAN

CLASSES = ("a", "b", "c")
INPUTS = ModelInputs(text=("text",), categorical=("region",), numeric=("count", "amount", "score"))
# The test reuses a real spec for the two facts reference_stats reads from it: label and classes.
SPEC = LOAN.model_copy(update={"label": "label", "classes": CLASSES})
WORDS = tuple(f"w{c}{d}" for c in "abcdefghij" for d in "abcd")  # 40 words every text draws from
FILLER = "however unfortunately regarding something entirely different altogether"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CFG = MonitoringSettings()


def population(
    seed: int, n: int, *, covariate: bool = False, concept: bool = False, missing: float = 0.05
) -> pd.DataFrame:
    """Rows with the served inputs, the model's prediction (right 80 % of the time on the original
    concept) and the true label. Covariate drift: `count` doubles and texts grow foreign words.
    Concept drift: 60 % of class b is relabelled a, while the model keeps predicting b."""
    rng = np.random.default_rng(seed)
    label = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    amount = rng.lognormal(3, 0.5, n)
    amount[rng.random(n) < missing] = np.nan
    texts = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
        if covariate and rng.random() < 0.7:
            text += " " + FILLER
        texts.append(text)
    right = rng.random(n) < 0.8
    prediction = np.where(right, label, (label + rng.integers(1, 3, n)) % 3)
    truth = label.copy()
    if concept:
        truth[(label == 1) & (rng.random(n) < 0.6)] = 0
    return pd.DataFrame(
        {
            "event": [f"e{seed}-{i}" for i in range(n)],
            "entity": rng.integers(1, 500, n),
            "text": texts,
            "region": rng.choice(["n", "s", "e", "w"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "count": rng.poisson(4.0 if covariate else 2.0, n),
            "amount": amount,
            "score": rng.normal(0, 1, n),
            "prediction": np.asarray(CLASSES)[prediction],
            "label": np.asarray(CLASSES)[truth],
        }
    )


@functools.cache
def version(
    created: datetime = T0 - timedelta(days=10), *, old_reference: bool = False, seed: int = 1000
) -> VersionFacts:
    train = population(seed, 3000)
    reference = contract.reference_stats(train, SPEC, INPUTS)
    if old_reference:  # what versions registered before quantiles were stored look like
        reference.pop("version")
        for stats in reference["features"].values():
            for key in (
                "quantiles",
                "length_bin_edges",
                "length_bin_shares",
                "length_quantiles",
                "vocabulary",
            ):
                stats.pop(key, None)
            stats.pop("oov_rate", None)
    holdout = population(seed + 1, 1000)
    scores = score(holdout["label"].to_numpy(), holdout["prediction"].to_numpy(), list(CLASSES))
    evaluation = {
        "candidate": {
            "accuracy": scores.accuracy,
            "macro_f1": scores.macro_f1,
            "per_label": scores.per_label,
            "confusion": scores.confusion,
        },
        "test_rows": len(holdout),
    }
    return VersionFacts(
        version="v1",
        meta={"created_at": created.isoformat(), "content_hash": "ab" * 32, "project": "p", "name": "m"},
        contract={"inputs": INPUTS.to_json(), "labels": list(CLASSES), "model_name": "m"},
        reference=reference,
        evaluation=evaluation,
        card={"evaluation": evaluation, "training": {"seconds": 2.5}, "data": {"rows": {"train": 3000}}},
    )


def write_log(
    directory: Path,
    served: pd.DataFrame,
    *,
    start: datetime = T0,
    rejected: int = 0,
    not_found: float = 0.0,
    version_name: str = "v1",
    batch: int = 8,
) -> None:
    """`served` as the server logs it: one record per request of `batch` rows, one minute apart."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    rng = np.random.default_rng(7)
    for i, begin in enumerate(range(0, len(served), batch)):
        rows = []
        for r in served.iloc[begin : begin + batch].to_dict("records"):
            found = bool(rng.random() >= not_found)
            features = {k: (r[k] if found else None) for k in ("region", "count", "amount", "score")}
            features["amount"] = (
                None if features["amount"] is None or np.isnan(features["amount"]) else r["amount"]
            )
            rows.append(
                {
                    "entity": int(r["entity"]),
                    "text": r["text"],
                    "event": r["event"],
                    "entity_found": found,
                    "features": {k: _plain(v) for k, v in features.items()},
                    "prediction": r["prediction"],
                    "probabilities": {c: (0.8 if c == r["prediction"] else 0.1) for c in CLASSES},
                }
            )
        received = start + timedelta(minutes=i)
        lines.append(
            {"received_at": received.isoformat(), "status": 200, "model_version": version_name, "rows": rows}
        )
    for j in range(rejected):
        error = {
            "error": "bad",
            "code": "invalid_request",
            "field": f"instances[{j % 3}].text",
            "rule": "max_length",
        }
        lines.append(
            {"received_at": (start + timedelta(seconds=j)).isoformat(), "status": 400, "error": error}
        )
    path = directory / f"requests-{start:%Y%m%d}-123.jsonl"
    with path.open("a") as fh:
        fh.write("".join(json.dumps(line) + "\n" for line in lines))


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON number the server would log."""
    return value.item() if hasattr(value, "item") else value


def run(
    tmp_path: Path,
    served: pd.DataFrame,
    facts: VersionFacts | None = None,
    cfg: MonitoringSettings = CFG,
    labels_arrive: bool = True,
    **log: Any,
) -> MonitoringSummary:
    write_log(tmp_path / "log", served, **log)
    events = served[["event", "label"]].assign(known=T0 + timedelta(days=1 if labels_arrive else 30))
    frame, window = collect_window(
        str(tmp_path / "log"),
        T0 - timedelta(hours=1),
        T0 + timedelta(days=1),
        {"v1"},
        events,
        "event",
        "label",
        "known",
        T0 + timedelta(days=2),
    )
    return assess(frame, window, facts or version(), cfg)


def warnings_of(summary: MonitoringSummary) -> list[str]:
    return [f"{r.severity} {r.signal}: {r.message}" for r in summary.reasons if r.severity != "info"]


# -- the reader -------------------------------------------------------------------------------------
def test_reader_keeps_the_window_counts_torn_lines_and_groups_rejections(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write_log(log, population(1, 40), rejected=5)
    write_log(log, population(2, 16), start=T0 + timedelta(days=3))  # after the window: another file
    write_log(log, population(3, 8), version_name="v0")  # an older version, same window
    with (log / f"requests-{T0:%Y%m%d}-123.jsonl").open("a") as fh:
        fh.write('{"received_at": "2026-03-02T12:30:00+00:00", "sta')  # a server killed mid-write
    read = read_request_log(str(log), T0, T0 + timedelta(days=1))
    assert read.skipped_lines == 1 and read.files == 1  # the day-5 file is not even opened
    frame, window = collect_window(
        str(log), T0, T0 + timedelta(days=1), {"v1"}, None, None, "label", None, T0 + timedelta(days=2)
    )
    assert window.rows == 40 and len(frame) == 40 and window.rows_other_versions == {"v0": 8}
    assert window.requests == 5 + 5 + 1  # 40 rows in batches of 8, 5 rejected, one v0 request
    assert [(r.field, r.rule, r.count) for r in window.rejected] == [("text", "max_length", 5)]
    assert window.event_id is None and window.labelled == 0 and window.without_event_id == 40
    # The features come out as columns under their own names, next to the request fields.
    assert {"text", "region", "count", "amount", "_prediction", "_entity_found", "_p:a"} <= set(frame)


def test_labels_join_by_event_id_only_once_they_have_arrived(tmp_path: Path) -> None:
    served = population(4, 300)
    summary = run(tmp_path / "now", served)
    assert summary.window.labelled == 300 and summary.performance.labelled == 300
    later = run(tmp_path / "later", served, labels_arrive=False)
    assert later.window.labelled == 0 and later.window.label_pending == 300
    assert any("wait for their label" in r.message for r in later.reasons)


# -- statistics -------------------------------------------------------------------------------------
def test_ks_against_stored_quantiles_agrees_with_the_full_sample_test() -> None:
    rng = np.random.default_rng(3)
    reference = rng.lognormal(3, 0.5, 5000)
    quantiles = np.quantile(reference, np.linspace(0, 1, contract.QUANTILE_POINTS))
    for shift in (1.0, 1.15):
        served = rng.lognormal(3, 0.5, 800) * shift
        statistic, p = ks_against_quantiles(served, quantiles, 5000)
        full = sps.ks_2samp(served, reference)
        assert abs(statistic - full.statistic) <= 1 / contract.QUANTILE_POINTS + 1e-9
        assert (p < 0.001) == (full.pvalue < 0.001)
    # Counts with many ties: the rebuilt step CDF handles them (no spurious jump at a tied value).
    counts = rng.poisson(2.0, 5000)
    statistic, p = ks_against_quantiles(
        rng.poisson(2.0, 800).astype(float), np.quantile(counts, np.linspace(0, 1, 201)), 5000
    )
    assert statistic < 0.05 and p > 0.05


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.8, 0.2])


# -- drift --------------------------------------------------------------------------------------------
def test_no_drift_is_reported_on_fresh_undrifted_samples_over_seeds(tmp_path: Path) -> None:
    """Bounded false alarms: fresh samples of the training distribution, 20 seeds, 600 rows each."""
    facts = version()
    alarms, flagged = 0, []
    for seed in range(20):
        summary = run(tmp_path / str(seed), population(seed, 600), facts)
        flagged += [d.feature for d in summary.drift if d.drifted]
        alarms += summary.decision != "healthy"
    assert flagged == [] and alarms <= 1, (alarms, flagged)


def test_injected_covariate_drift_is_detected_on_the_drifted_inputs_only(tmp_path: Path) -> None:
    summary = run(tmp_path, population(50, 600, covariate=True))
    drifted = {d.feature: d for d in summary.drift if d.drifted}
    assert set(drifted) == {"count", "text (length)"}, warnings_of(summary)
    assert drifted["count"].test == "ks" and (drifted["count"].p_value or 1) < 1e-6
    assert summary.decision == "retrain"
    assert any(
        r.signal == "drift" and r.severity == "retrain" and "count" in r.message for r in summary.reasons
    )
    (text,) = summary.text
    assert text.oov_rate is not None and text.reference_oov_rate is not None
    assert text.oov_rate - text.reference_oov_rate > 0.2
    assert any(r.signal == "text" and "vocabulary" in r.message for r in summary.reasons)
    # Predictions did not move (the simulated model ignores the drifted inputs) and accuracy held.
    assert not any(r.signal in ("prediction", "accuracy") for r in summary.reasons if r.severity != "info")


def test_a_categorical_shift_is_found_by_chi_square(tmp_path: Path) -> None:
    served = population(51, 600)
    served["region"] = np.random.default_rng(0).choice(["n", "s", "e", "w"], 600, p=[0.1, 0.2, 0.3, 0.4])
    summary = run(tmp_path, served)
    (region,) = [d for d in summary.drift if d.feature == "region"]
    assert region.drifted and region.test == "chi2" and (region.p_value or 1) < 1e-6


def test_concept_drift_shows_as_an_accuracy_drop_on_fresh_labels(tmp_path: Path) -> None:
    summary = run(tmp_path, population(60, 600, concept=True))
    perf = summary.performance
    assert perf.accuracy is not None and perf.accuracy_drop is not None
    assert perf.accuracy_drop > 0.08 and (perf.p_value or 1) < 0.001
    assert summary.decision == "retrain"
    assert [r.signal for r in summary.reasons if r.severity == "retrain"] == ["accuracy"]
    assert not summary.drifted  # the inputs did not move: only labels tell
    assert perf.per_label["a"]["recall"] < perf.reference_per_label["a"]["recall"] - 0.1
    # Without labels the same window looks healthy: that is why labels are joined.
    assert run(tmp_path / "unlabelled", population(60, 600, concept=True), labels_arrive=False).decision == (
        "healthy"
    )


# -- decision rules -----------------------------------------------------------------------------------
def test_model_age_warns_then_asks_for_retraining(tmp_path: Path) -> None:
    served = population(70, 300)
    young = run(tmp_path / "young", served, version(T0 - timedelta(days=10)))
    assert young.decision == "healthy" and young.model.age_days == pytest.approx(11, abs=0.1)
    middle = run(tmp_path / "middle", served, version(T0 - timedelta(days=70)))
    assert middle.decision == "warn" and middle.reasons[0].signal == "age"
    old = run(tmp_path / "old", served, version(T0 - timedelta(days=120)))
    assert old.decision == "retrain" and "days old" in old.reasons[0].message


def test_data_quality_rules_warn_with_the_field_and_rule(tmp_path: Path) -> None:
    served = population(71, 400)
    violations = run(tmp_path / "v", served, rejected=10)
    assert violations.decision == "warn"
    assert any("text: max_length (10x)" in r.message for r in violations.reasons)
    unknown = run(tmp_path / "u", served, not_found=0.2)
    assert unknown.decision == "warn"
    assert unknown.data_quality.entity_not_found_rate == pytest.approx(0.2, abs=0.06)
    missing = run(tmp_path / "m", population(72, 400, missing=0.3))
    assert missing.decision == "warn"
    assert any(r.signal == "data_quality" and r.message.startswith("amount:") for r in missing.reasons)


def test_no_traffic_warns_and_little_traffic_is_not_judged(tmp_path: Path) -> None:
    empty = run(tmp_path / "empty", population(73, 0))
    assert empty.decision == "warn" and empty.reasons[0].signal == "traffic"
    few = run(tmp_path / "few", population(74, 50, covariate=True))  # drifted, but too few rows
    assert few.decision == "healthy" and not few.drifted
    assert {r.signal for r in few.reasons} == {"traffic", "accuracy"}  # both "not judged" notes


def test_thresholds_are_configuration(tmp_path: Path) -> None:
    served = population(75, 600, covariate=True)
    lenient = CFG.model_copy(update={"psi_warn": 5.0, "psi_retrain": 10.0, "max_oov_increase": 1.0})
    assert run(tmp_path, served, cfg=lenient).decision == "healthy"
    with pytest.raises(ValueError, match="psi_warn must not exceed psi_retrain"):
        MonitoringSettings(psi_warn=0.5, psi_retrain=0.2)
    with pytest.raises(ValueError, match="Extra inputs"):
        MonitoringSettings.model_validate({"psi_wran": 0.1})


def test_monitoring_settings_live_in_the_environment_file(tmp_path: Path) -> None:
    from shipyard.settings import load_settings

    path = tmp_path / "s.yaml"
    path.write_text(
        "environment: local\nproject: ticket_routing\n"
        "monitoring:\n  psi_retrain: 0.4\n  max_age_days: 30\n  warn_age_days: 7\n"
    )
    settings = load_settings(path=path)
    assert settings.monitoring.psi_retrain == 0.4 and settings.monitoring.max_age_days == 30
    path.write_text("environment: local\nproject: ticket_routing\nmonitoring:\n  psi_retrain: 0.01\n")
    with pytest.raises(SettingsError, match="psi_warn must not exceed psi_retrain"):
        load_settings(path=path)
    assert "monitoring" in Settings.model_json_schema()["properties"]


# -- old versions -------------------------------------------------------------------------------------
def test_reference_stats_without_quantiles_still_monitor_with_psi_only(tmp_path: Path) -> None:
    old = version(old_reference=True)
    fresh = run(tmp_path / "fresh", population(80, 600), old)
    assert fresh.decision == "healthy", warnings_of(fresh)
    assert all(d.test is None for d in fresh.drift if d.kind == "numeric")
    assert {d.test for d in fresh.drift if d.kind == "categorical"} == {"chi2"}  # shares were always there
    assert any("PSI only" in d.note for d in fresh.drift)
    assert any("PSI only" in r.message for r in fresh.reasons if r.severity == "info")
    (text,) = fresh.text
    assert text.oov_rate is None and "no vocabulary" in text.note and "mean only" in text.note
    drifted = run(tmp_path / "drifted", population(81, 600, covariate=True), old)
    assert [d.feature for d in drifted.drifted] == ["count"] and drifted.decision == "retrain"


def test_reference_stats_store_quantiles_length_bins_and_a_vocabulary() -> None:
    train = population(1, 2000)
    stats = contract.reference_stats(train, SPEC, INPUTS)
    assert stats["version"] == 2 and stats["quantile_points"] == contract.QUANTILE_POINTS
    amount = stats["features"]["amount"]
    assert len(amount["quantiles"]) == contract.QUANTILE_POINTS and amount["missing_rate"] > 0
    assert amount["quantiles"] == sorted(amount["quantiles"])
    text = stats["features"]["text"]
    assert set(text["vocabulary"]) == set(WORDS) and text["oov_rate"] == 0.0
    assert len(text["length_quantiles"]) == contract.QUANTILE_POINTS
    json.dumps(stats)  # stored as JSON with the version


# -- the event id -------------------------------------------------------------------------------------
@pytest.mark.parametrize("project", ["ticket_routing", "tests.projects.loan_default"])
def test_the_event_id_is_a_logged_request_field_never_a_model_input(project: str) -> None:
    spec = load_project(project)
    field = spec.field(spec.event_id)
    assert not field.required and field.type in ("string", "integer")
    assert spec.event_id not in {f.name for f in spec.model_request_fields}
    frame = pd.DataFrame(
        {
            spec.event_id: ["1", "2"] if field.type == "string" else [1, 2],
            spec.entity_key: [1, 2],
            "x": [0.5, 1.5],
            spec.label: list(spec.classes[:2]),
        }
    )
    assert ModelInputs.derive(frame, spec).columns == ("x",)


def test_the_contract_gives_the_event_id_no_categories() -> None:
    spec = load_project("ticket_routing")
    train = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "customer_id": [1, 2],
            "ticket_text": ["a b", "c d"],
            "department": ["it", "hr"],
        }
    )
    inputs = ModelInputs(text=("ticket_text",), categorical=(), numeric=())
    fields = {f["name"]: f for f in contract.input_contract(train, spec, inputs)["request"]}
    assert "categories" not in fields["ticket_id"] and fields["ticket_id"]["required"] is False


# -- the report ---------------------------------------------------------------------------------------
def test_the_report_is_one_self_contained_page_with_plots(tmp_path: Path) -> None:
    summary = run(tmp_path, population(90, 600, covariate=True, concept=True))
    page = render_html(summary)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 4
    assert "RETRAIN" in page.upper() and "count drifted" in page
    # Nothing is fetched: no script, no linked image, stylesheet or font (only SVG's own namespaces).
    for external in ("<script", "src=", 'href="http', "@import", "url(http"):
        assert external not in page, external
    assert "rdf:" not in page
    # The summary is the machine-readable twin of the page.
    again = MonitoringSummary.model_validate_json(summary.model_dump_json())
    assert again.decision == summary.decision and copy.deepcopy(again) == again


def test_published_reports_are_what_triage_reads_and_a_corrupt_one_is_named(tmp_path: Path) -> None:
    """`monitoring.reports`: each run's folder and `latest.*`; triage lists the folders' summaries,
    skips the latest copies and a write in progress, and names a summary it cannot read."""
    from shipyard.monitor_steps import publish_report, report_key
    from shipyard.settings import load_settings
    from shipyard.storage import TMP_PREFIX
    from shipyard.triage import monitoring_summaries

    summary = run(tmp_path, population(91, 600))
    reports = tmp_path / "published"
    uri = publish_report(str(reports), summary, render_html(summary))
    key = report_key(summary)
    assert uri == str(reports / key / "summary.json")
    assert (reports / "latest.json").read_text() == (reports / key / "summary.json").read_text()
    (reports / "v9-20250101T000000Z").mkdir()
    (reports / "v9-20250101T000000Z" / "summary.json").write_text('{"decision": "hea')  # cut short
    (reports / f"{TMP_PREFIX}0123").write_text("partial")
    settings = load_settings("local").model_copy(
        update={"monitoring": MonitoringSettings(reports=str(reports))}
    )
    location, found, problems = monitoring_summaries(settings)
    assert location == str(reports)
    assert [f.uri for f in found] == [uri] and found[0].summary == summary
    assert found[0].report == str(reports / key / "report.html")
    (problem,) = problems
    assert problem.startswith(f"{reports / 'v9-20250101T000000Z' / 'summary.json'}: not a monitoring summary")
    # Publishing where nothing can be written is one line naming the setting, not a traceback.
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(
        ReportError, match=rf"cannot publish the monitoring report to {blocked}/reports \(monitoring"
    ):
        publish_report(f"{blocked}/reports", summary, "<html></html>")
    # A relative location would depend on where a step runs: refused.
    with pytest.raises(ValueError, match="reports"):
        MonitoringSettings(reports="monitoring")


# -- the pipeline -------------------------------------------------------------------------------------
def test_the_monitoring_pipeline_compiles_for_a_cluster_environment(tmp_path: Path) -> None:
    """Like the training pipeline: the environment's settings are the defaults, and every task reads
    object storage with the endpoint and the Secret-backed credentials the settings name."""
    import yaml

    from pipelines.monitoring import compile_monitoring_pipeline, monitoring_arguments
    from pipelines.training import environment_settings

    dev = environment_settings("dev")
    path = compile_monitoring_pipeline(tmp_path / "monitoring.yaml", dev)
    spec, platform = yaml.safe_load_all(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"collect", "monitor", "condition-1"}
    # Continuous training inside the pipeline: `retrain` runs only with the parameter on and a
    # retrain decision from the monitor step (two nested KFP conditions).
    assert tasks["condition-1"]["triggerPolicy"]["condition"].endswith("['pipelinechannel--retrain'] == true")
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]["condition-2"]
    assert inner["triggerPolicy"]["condition"].endswith("['pipelinechannel--monitor-Output'] == 'retrain'")
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"retrain"}
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    # The log is read where the predictors ship it, and the version is the one that served the
    # window: a scheduled run names neither the pod nor the version.
    assert (
        defaults["request_log"] == monitoring_arguments(dev)["request_log"] == dev.serving.request_log.upload
    )
    assert defaults["model_uri"] == "" and defaults["model_registry"] == dev.model_registry
    assert defaults["monitoring"]["psi_retrain"] == dev.monitoring.psi_retrain
    # dev has a KFP API: the pipeline submits training itself, with the environment's settings.
    assert dev.kfp.host and defaults["retrain"] is True
    assert Settings.model_validate(defaults["environment_settings"]) == dev
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-collect", "exec-monitor", "exec-retrain"}
    assert all("secretAsEnv" in e for e in executors.values())
    # Without a KFP API the step stays off by default (a local run does CT after the decision).
    local = dev.model_copy(update={"kfp": dev.kfp.model_copy(update={"host": None})})
    assert monitoring_arguments(local)["retrain"] is False
