"""The release record's rules (shipyard.release) and the canary's arithmetic (shipyard.rollout):
what a reviewer approves must mean one thing, and a rollback must follow from the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipyard.errors import ReleaseError
from shipyard.release import load_record, write_record
from shipyard.rollout import Scrape, Window, judge, parse_metrics, quantile, window
from shipyard.settings import CanaryPolicy

ROOT = Path(__file__).resolve().parents[2]
RECORDS = {env: ROOT / "manifests" / "overlays" / env / "release.yaml" for env in ("dev", "staging", "prod")}


@pytest.mark.parametrize("env", sorted(RECORDS))
def test_committed_records_are_valid_and_name_their_environment(env: str) -> None:
    record = load_record(RECORDS[env])
    assert record.spec.environment == env
    assert record.spec.model.storage_uri.endswith(f"/versions/{record.spec.model.content_hash}")


def _mutated(tmp_path: Path, change: dict[str, object]) -> Path:
    doc = yaml.safe_load(RECORDS["prod"].read_text())
    for dotted, value in change.items():
        node = doc
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec.surprise": 1}, "spec.surprise: Extra inputs are not permitted"),
        ({"spec.model.contentHash": "abc"}, "spec.model.contentHash"),
        (
            {"spec.model.storageUri": "s3://shipyard-models/prod/versions/" + "ab" * 32},
            "must end with /versions/",
        ),
        ({"spec.code.image": "ghcr.io/shipyard-mlops/shipyard:0.1.0"}, "spec.code.image"),
        ({"spec.code.gitSha": "main"}, "spec.code.gitSha"),
        ({"spec.promotion.at": "2026-11-24T03:00:00"}, "must carry a time zone"),
        ({"metadata.annotations": {}}, "kustomize reads the record"),
        ({"kind": "ConfigMap"}, "kind"),
        ({"spec.contract": None}, "spec.contract: Field required"),
    ],
)
def test_a_record_that_breaks_a_rule_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ReleaseError) as err:
        load_record(_mutated(tmp_path, change))
    assert message in str(err.value)
    assert str(tmp_path / "release.yaml") in str(err.value)


def test_a_written_record_reads_back_equal_and_replaces_the_old_one_whole(tmp_path: Path) -> None:
    record = load_record(RECORDS["staging"])
    target = tmp_path / "overlay" / "release.yaml"
    write_record(target, record)
    assert load_record(target) == record
    assert not list(target.parent.glob(".*tmp"))  # the temp file was renamed into place


PREDICT = 'protocol="v1",endpoint="/v1/models/{model_name}:predict"'
PROBE = 'protocol="other",endpoint="/v2/health/ready"'
METRICS = "\n".join(
    [
        "# TYPE shipyard_requests_total counter",
        f'shipyard_requests_total{{{PREDICT},code="200"}} 90.0',
        f'shipyard_requests_total{{{PREDICT},code="503"}} 10.0',
        f'shipyard_requests_total{{{PROBE},code="200"}} 500.0',
        "# TYPE shipyard_request_duration_seconds histogram",
        *(
            f'shipyard_request_duration_seconds_bucket{{{labels},method="{m}",le="{le}"}} {n}'
            for labels, m, counts in ((PREDICT, "POST", (50.0, 100.0, 100.0)), (PROBE, "GET", (500.0,) * 3))
            for le, n in zip(("0.01", "0.1", "+Inf"), counts, strict=True)
        ),
        "",
    ]
)


def test_metrics_count_prediction_endpoints_only() -> None:
    scrape = parse_metrics(METRICS)
    assert (scrape.requests, scrape.errors) == (100.0, 10.0)  # probes would dilute the error ratio
    assert scrape.buckets == ((0.01, 50.0), (0.1, 100.0), (float("inf"), 100.0))


def test_window_is_the_difference_of_two_scrapes_and_interpolates_p95() -> None:
    before = Scrape(100.0, 10.0, ((0.01, 50.0), (0.1, 100.0), (float("inf"), 100.0)))
    after = Scrape(300.0, 10.0, ((0.01, 50.0), (0.1, 300.0), (float("inf"), 300.0)))
    w = window(before, after)
    assert (w.requests, w.errors, w.error_ratio) == (200.0, 0.0, 0.0)
    assert w.p95 == pytest.approx(0.01 + 0.09 * 0.95)  # all 200 new requests fell in (0.01, 0.1]
    assert quantile(0.5, []) is None


POLICY = CanaryPolicy(
    min_requests=20, max_error_ratio=0.01, max_latency_ratio=1.5, latency_floor_seconds=0.05
)


@pytest.mark.parametrize(
    ("canary", "stable", "breach"),
    [
        (Window(100, 0, 0.04), Window(900, 0, 0.03), None),
        (Window(100, 5, 0.04), Window(900, 0, 0.03), "canary error ratio 5.0% > 1.0%"),
        (Window(100, 0, 0.30), Window(900, 0, 0.10), "canary p95 300.0 ms > 1.5x stable p95 100.0 ms"),
        (Window(100, 0, 0.04), Window(900, 0, 0.01), None),  # 4x slower but under the floor: noise
        (Window(5, 0, 0.01), Window(900, 0, 0.01), "fewer than the 20 needed"),
    ],
)
def test_judge(canary: Window, stable: Window, breach: str | None) -> None:
    found = judge(canary, stable, POLICY)
    if breach is None:
        assert found == []
    else:
        assert len(found) == 1 and breach in found[0]


def test_canary_steps_must_increase_to_100() -> None:
    with pytest.raises(ValueError, match="end at 100"):
        CanaryPolicy(steps=(10, 50))
    with pytest.raises(ValueError, match="increase strictly"):
        CanaryPolicy(steps=(50, 10, 100))
