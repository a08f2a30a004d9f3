"""Canary rollout of a release record with metric-checked rollback (KServe `spec.canary`).

KServe 0.20 runs canaries for Standard (raw) deployments: each `spec.canary[]` entry is its own
Deployment and Service (`<isvc>-<name>-predictor`) with `trafficPercent` of the traffic; the older
`canaryTrafficPercent` is silently ignored in raw mode, so it is never used here.

The steps, each one server-side apply of the environment's rendered overlay with one change:

1. The stable predictor keeps the model the cluster runs now; the record's model becomes the canary
   at `steps[0]` percent. Wait until KServe reports the canary Ready at that generation.
2. Observe both predictors for `step_seconds`: requests, 5xx answers and p95 latency of the inference
   endpoints, as deltas of the servers' own counters over the window. Breach (canary 5xx share above
   the limit, p95 above both `max_latency_ratio` x stable's and the floor, or too few canary requests to
   judge) -> apply the overlay with the old model and no canary (the cluster ends with only the stable
   version), exit non-zero with the reason.
3. Next step, until 100. Then the stable predictor takes the record's model while the canary still
   serves everything, and once that is Ready the canary is dropped: the overlay as rendered, which is
   exactly the record.

Metrics come from the predictors' /metrics (explicit URLs: pods, port-forwards, or local servers).
Every field a release sets is owned by one field manager, so dropping the canary from the applied
object removes it from the cluster.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shipyard.deploy import (
    ISVC,
    Kubectl,
    Target,
    apply_target,
    conditions_of,
    deployment_name,
    running_model,
    runs,
    serving,
    wait_until,
)
from shipyard.errors import DeployError, RolloutError
from shipyard.settings import CanaryPolicy

REQUESTS = "shipyard_requests"  # the parser drops a counter's _total suffix from the family name
LATENCY = "shipyard_request_duration_seconds"
ANNOTATIONS = ("shipyard.io/model-version", "shipyard.io/content-hash", "shipyard.io/git-sha")


def _inference(endpoint: str) -> bool:
    return endpoint.endswith(":predict") or endpoint.endswith("/infer")


@dataclass(frozen=True)
class Scrape:
    """Cumulative counters of the inference endpoints of one or more servers at one moment."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), sorted


def parse_metrics(text: str) -> Scrape:
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for s in family.samples:
                if s.name.endswith("_total") and _inference(s.labels.get("endpoint", "")):
                    requests += s.value
                    if s.labels.get("code", "").startswith("5"):
                        errors += s.value
        elif family.name == LATENCY:
            for s in family.samples:
                if s.name.endswith("_bucket") and _inference(s.labels.get("endpoint", "")):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
    return Scrape(requests, errors, tuple(sorted(buckets.items())))


def scrape(urls: Sequence[str], timeout: float = 10.0) -> Scrape:
    """The sum over every server of a version (each pod counts its own requests)."""
    total = Scrape(0.0, 0.0, ())
    for url in urls:
        try:
            response = httpx.get(url, timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RolloutError(f"cannot read metrics from {url}: {exc}") from exc
        one = parse_metrics(response.text)
        merged = dict(total.buckets)
        for le, count in one.buckets:
            merged[le] = merged.get(le, 0.0) + count
        total = Scrape(
            total.requests + one.requests, total.errors + one.errors, tuple(sorted(merged.items()))
        )
    return total


@dataclass(frozen=True)
class Window:
    """What one version did between two scrapes."""

    requests: float
    errors: float
    p95: float | None  # seconds, interpolated in the histogram like PromQL's histogram_quantile

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        p95 = f"{self.p95 * 1000:.1f} ms" if self.p95 is not None else "n/a"
        return f"{self.requests:.0f} requests, {self.error_ratio:.1%} 5xx, p95 {p95}"


def window(before: Scrape, after: Scrape) -> Window:
    start = dict(before.buckets)
    deltas = [(le, count - start.get(le, 0.0)) for le, count in after.buckets]
    return Window(after.requests - before.requests, after.errors - before.errors, quantile(0.95, deltas))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (le, count) buckets; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return buckets[-1][0]


def judge(canary: Window, stable: Window, policy: CanaryPolicy) -> list[str]:
    """Why the canary must be rolled back ([] when it may proceed)."""
    breaches = []
    if canary.requests < policy.min_requests:
        breaches.append(
            f"the canary answered {canary.requests:.0f} requests, fewer than the {policy.min_requests} "
            "needed to judge it"
        )
        return breaches
    if canary.error_ratio > policy.max_error_ratio:
        breaches.append(
            f"canary error ratio {canary.error_ratio:.1%} > {policy.max_error_ratio:.1%} "
            f"(stable {stable.error_ratio:.1%})"
        )
    if canary.p95 is not None and canary.p95 > policy.latency_floor_seconds:
        limit = stable.p95 * policy.max_latency_ratio if stable.p95 is not None else None
        if limit is not None and canary.p95 > limit:
            breaches.append(
                f"canary p95 {canary.p95 * 1000:.1f} ms > {policy.max_latency_ratio}x stable p95 "
                f"{stable.p95 * 1000 if stable.p95 is not None else float('nan'):.1f} ms"
            )
    return breaches


@dataclass(frozen=True)
class MetricsSource:
    """Where each version's metrics are read: the servers' /metrics URLs, given (port-forwards, a
    test's local servers), or empty to read every pod of each predictor Deployment directly, which
    works where the rollout runs inside the cluster network (a Job, an in-cluster CI runner)."""

    stable: tuple[str, ...] = ()
    canary: tuple[str, ...] = ()
    port: int = 8080

    def urls(self, kubectl: Kubectl, target: Target, canary: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Resolved once per step, so both scrapes of a window read the same servers."""
        if self.stable and self.canary:
            return self.stable, self.canary
        return (
            self.stable or pod_metrics_urls(kubectl, target, None, self.port),
            self.canary or pod_metrics_urls(kubectl, target, canary, self.port),
        )


def pod_metrics_urls(kubectl: Kubectl, target: Target, predictor: str | None, port: int) -> tuple[str, ...]:
    """http://<pod IP>:<port>/metrics of the running pods of a predictor's Deployment (KServe labels
    them app=isvc.<deployment>)."""
    selector = f"app=isvc.{deployment_name(target.name, predictor)}"
    out = kubectl.run("get", "pods", "-n", target.namespace, "-l", selector, "-o", "json")
    pods = json.loads(out).get("items", [])
    urls = tuple(
        f"http://{pod['status']['podIP']}:{port}/metrics"
        for pod in pods
        if pod.get("status", {}).get("phase") == "Running" and pod.get("status", {}).get("podIP")
    )
    if not urls:
        raise RolloutError(
            f"no running pods match {selector} in {target.namespace}: nothing to read metrics from"
        )
    return urls


@dataclass
class StepReport:
    percent: int
    canary: Window
    stable: Window
    breaches: list[str]


@dataclass
class RolloutResult:
    outcome: str  # "deployed" (nothing ran before), "unchanged", "promoted", "rolled back"
    steps: list[StepReport]
    reason: str = ""


def canary_name(target: Target) -> str:
    return target.record.spec.model.version


def with_model(target: Target, live: dict[str, Any], canary: int | None) -> list[dict[str, Any]]:
    """The rendered overlay with the stable predictor on the live model, plus the record's model as
    a canary at `canary` percent (None: no canary, i.e. the rollback object)."""
    doc = copy.deepcopy(target.isvc)
    live_model = running_model(live)
    if live_model is not None:
        doc["spec"]["predictor"]["model"] = copy.deepcopy(live_model)
        annotations = doc["metadata"].setdefault("annotations", {})
        for key in ANNOTATIONS:
            value = live["metadata"].get("annotations", {}).get(key)
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
    if canary is not None:
        doc["spec"]["canary"] = [
            {
                "predictor": {
                    "name": canary_name(target),
                    "model": copy.deepcopy(target.isvc["spec"]["predictor"]["model"]),
                },
                "trafficPercent": canary,
            }
        ]
    return [doc]


def _probe_canary(kubectl: Kubectl, target: Target, name: str, percent: int) -> tuple[bool, str]:
    """The canary's Deployment runs the record's model and KServe reports it at `percent`."""
    isvc = kubectl.get(ISVC, target.name, target.namespace)
    ok, why = conditions_of(isvc)
    if not ok:
        return ok, why
    assert isvc is not None
    status = next(
        (s for s in isvc.get("status", {}).get("canaryStatuses") or [] if s.get("name") == name), None
    )
    if status is None:
        return False, f"no status for canary {name} yet"
    if status.get("trafficPercent") != percent or not status.get("ready"):
        return False, f"canary {name} at {status.get('trafficPercent')}%, ready={status.get('ready')}"
    deployment = kubectl.get("deployment", deployment_name(target.name, name), target.namespace)
    return runs(deployment, target.isvc["spec"]["predictor"]["model"])


def _only_stable(kubectl: Kubectl, target: Target, model: dict[str, Any], canary: str) -> tuple[bool, str]:
    """The stable predictor runs `model` and the canary's Deployment is gone."""
    if kubectl.get("deployment", deployment_name(target.name, canary), target.namespace) is not None:
        return False, f"canary {canary}'s Deployment still exists"
    return serving(kubectl, target, model)


def rollout(
    kubectl: Kubectl,
    target: Target,
    policy: CanaryPolicy,
    metrics: MetricsSource,
    *,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutResult:
    live = kubectl.get(ISVC, target.name, target.namespace)
    want = target.record.spec.model
    model = running_model(live)
    stable_hash = None
    if model is not None:
        stable_hash = next(
            (e.get("value") for e in model.get("env", []) if e.get("name") == "SHIPYARD_CONTENT_HASH"), None
        )
    if live is None or model is None:
        say(f"nothing runs in {target.namespace} yet: deploying {want.version} directly")
        apply_target(kubectl, target, policy.ready_timeout_seconds)
        return RolloutResult("deployed", [])
    if stable_hash == want.content_hash:
        # Already the stable version; a canary still listed means a rollout was interrupted after
        # its promotion step, and applying the record finishes it (the record lists no canary).
        leftover = bool(live["spec"].get("canary"))
        say(
            f"{target.namespace}/{target.name} already serves {want.version}: "
            + ("removing the canary an interrupted rollout left" if leftover else "applying the record as is")
        )
        apply_target(kubectl, target, policy.ready_timeout_seconds)
        return RolloutResult("unchanged", [])

    name = canary_name(target)
    old = live["metadata"].get("annotations", {}).get("shipyard.io/model-version", stable_hash or "?")
    reports: list[StepReport] = []

    def roll_back(reason: str) -> RolloutResult:
        say(f"ROLLBACK: {reason}")
        kubectl.apply(with_model(target, live, None))
        wait_until(
            "rollback to the stable version",
            lambda: _only_stable(kubectl, target, model, name),
            policy.ready_timeout_seconds,
        )
        say(f"rolled back: {target.namespace}/{target.name} serves only {old} again")
        return RolloutResult("rolled back", reports, reason)

    for percent in policy.steps:
        say(f"canary {want.version}: {percent}% of the traffic (stable {old})")
        kubectl.apply(with_model(target, live, percent))
        try:
            wait_until(
                f"canary {name} at {percent}%",
                partial(_probe_canary, kubectl, target, name, percent),
                policy.ready_timeout_seconds,
            )
        except DeployError as exc:
            return roll_back(str(exc))
        stable_urls, canary_urls = metrics.urls(kubectl, target, name)
        before = scrape(stable_urls), scrape(canary_urls)
        sleep(policy.step_seconds)
        after = scrape(stable_urls), scrape(canary_urls)
        stable_w, canary_w = window(before[0], after[0]), window(before[1], after[1])
        breaches = judge(canary_w, stable_w, policy)
        reports.append(StepReport(percent, canary_w, stable_w, breaches))
        say(f"  canary: {canary_w.describe()}\n  stable: {stable_w.describe()}")
        if breaches:
            return roll_back("; ".join(breaches))

    say(f"canary {want.version} held at every step: making it the stable version")
    final = copy.deepcopy(target.isvc)
    final["spec"]["canary"] = with_model(target, live, 100)[0]["spec"]["canary"]
    kubectl.apply([final])  # the stable predictor rolls to the new model while the canary serves
    wait_until(
        "the stable predictor on the new version",
        partial(serving, kubectl, target, target.isvc["spec"]["predictor"]["model"]),
        policy.ready_timeout_seconds,
    )
    apply_target(kubectl, target, policy.ready_timeout_seconds)  # the record, exactly: canary dropped
    wait_until(
        f"canary {name} removed",
        lambda: _only_stable(kubectl, target, target.isvc["spec"]["predictor"]["model"], name),
        policy.ready_timeout_seconds,
    )
    say(f"{target.namespace}/{target.name} serves {want.version}")
    return RolloutResult("promoted", reports)
