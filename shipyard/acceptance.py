"""Staging validation: the evidence a prod promotion requires, taken from the running predictor.

Three checks against the predictor's URL, each recorded with its numbers: smoke (ready, the project's
example requests answered by exactly the version the record names), load (sustained QPS and p95 at a
fixed concurrency, no errors), and served accuracy on the most recent labelled events of the
environment's data (online features as the server sees them, so it also catches train/serve skew).
The result is a JSON file whose hash the prod record carries.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from shipyard.errors import ReleaseError
from shipyard.release import Release
from shipyard.settings import Settings


def _predict_path(record: Release) -> str:
    return f"/v1/models/{record.spec.model.name}:predict"


def smoke(client: httpx.Client, record: Release, examples: list[dict[str, Any]]) -> dict[str, Any]:
    ready = client.get("/v2/health/ready")
    problems = [] if ready.status_code == 200 else [f"/v2/health/ready answered {ready.status_code}"]
    for i, example in enumerate(examples):
        response = client.post(_predict_path(record), json={"instances": [example]})
        if response.status_code != 200:
            problems.append(f"example {i}: HTTP {response.status_code}: {response.text[:200]}")
            continue
        served = response.json().get("model_version")
        if served != record.spec.model.version:
            problems.append(
                f"example {i}: answered by {served!r}, the record names {record.spec.model.version}"
            )
    return {
        "name": "smoke",
        "passed": not problems,
        "detail": f"ready, {len(examples)} example requests answered by {record.spec.model.version}"
        if not problems
        else "; ".join(problems),
    }


def load(
    base_url: str,
    record: Release,
    examples: list[dict[str, Any]],
    seconds: float,
    concurrency: int,
    min_qps: float,
    max_p95: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            i = offset
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    ok = (
                        client.post(
                            _predict_path(record), json={"instances": [examples[i % len(examples)]]}
                        ).status_code
                        == 200
                    )
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append(time.perf_counter() - start)
                    errors[0] += not ok
                i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    qps = len(latencies) / elapsed if elapsed else 0.0
    p95 = float(np.percentile(latencies, 95)) if latencies else float("inf")
    passed = qps >= min_qps and p95 <= max_p95 and errors[0] == 0
    return {
        "name": "load",
        "passed": passed,
        "qps": round(qps, 2),
        "p95_seconds": round(p95, 4),
        "errors": errors[0],
        "detail": f"{qps:.1f} req/s at concurrency {concurrency} for {seconds:.0f}s (min {min_qps}), "
        f"p95 {p95 * 1000:.1f} ms (max {max_p95 * 1000:.0f} ms), {errors[0]} errors",
    }


def recent_labelled(settings: Settings, rows: int) -> pd.DataFrame:
    """The newest labelled events of the environment's data, as request rows plus the label."""
    spec = settings.spec
    frame = pd.read_parquet(Path(settings.data_dir) / spec.events.file)
    frame = frame[frame[spec.label].notna()]
    return frame.sort_values(spec.timestamp_of(spec.events_table), kind="stable").tail(rows)


def holdout_accuracy(
    client: httpx.Client, record: Release, settings: Settings, evaluated: float, rows: int, max_drop: float
) -> dict[str, Any]:
    spec = settings.spec
    frame = recent_labelled(settings, rows)
    fields = [f.name for f in spec.request if f.name in frame.columns]
    correct = answered = 0
    for start in range(0, len(frame), 64):
        chunk = frame.iloc[start : start + 64]
        instances = json.loads(chunk[fields].to_json(orient="records", date_format="iso"))
        response = client.post(_predict_path(record), json={"instances": instances})
        if response.status_code != 200:
            continue
        predictions = response.json()["predictions"]
        for truth, prediction in zip(chunk[spec.label].astype(str), predictions, strict=True):
            answered += 1
            correct += str(prediction.get(spec.label)) == truth
    accuracy = correct / answered if answered else 0.0
    passed = answered == len(frame) and accuracy >= evaluated - max_drop
    return {
        "name": "holdout-accuracy",
        "passed": passed,
        "accuracy": round(accuracy, 4),
        "rows": answered,
        "detail": f"served accuracy {accuracy:.3f} on the {answered}/{len(frame)} newest labelled events "
        f"(evaluation {evaluated:.3f}, allowed drop {max_drop:.3f})",
    }


def validate(base_url: str, record: Release, settings: Settings, evaluated_accuracy: float) -> dict[str, Any]:
    policy = settings.release.validation
    spec = settings.spec
    recent = recent_labelled(settings, policy.holdout_rows)
    fields = [f.name for f in spec.request if f.name in recent.columns]
    requests: list[dict[str, Any]] = json.loads(recent[fields].to_json(orient="records", date_format="iso"))
    if not requests:
        raise ReleaseError(f"no labelled events in {settings.data_dir}: nothing to validate with")
    # The project's example texts, each sent for an entity the environment knows.
    examples = [
        {**requests[i % len(requests)], **dict(example)} for i, example in enumerate(spec.examples)
    ] or requests[:3]
    with httpx.Client(base_url=base_url, timeout=60) as client:
        checks = [smoke(client, record, examples)]
        checks.append(
            load(
                base_url,
                record,
                requests,
                policy.load_seconds,
                policy.load_concurrency,
                policy.min_qps,
                policy.max_p95_seconds,
            )
        )
        checks.append(
            holdout_accuracy(
                client, record, settings, evaluated_accuracy, policy.holdout_rows, policy.max_accuracy_drop
            )
        )
    return {
        "name": "staging-validation",
        "environment": record.spec.environment,
        "model": {
            "name": record.spec.model.name,
            "version": record.spec.model.version,
            "contentHash": record.spec.model.content_hash,
        },
        "url": base_url,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "passed": all(c["passed"] for c in checks),
        "checks": checks,
    }
