"""`shipyard release` and `shipyard status`: promotion by pull request, one record per environment.

propose -> (PR review, merge) -> apply [-> rollout]; `check` is what the PR workflow runs, `validate`
is staging's evidence for prod, `status` compares every record with what its cluster runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shipyard.cli.root import main, settings_of
from shipyard.settings import Settings, load_settings

DEPLOYED = ("dev", "staging", "prod")


def _settings_for(root: Path) -> Any:
    def settings_for(env: str) -> Settings:
        return load_settings(path=root / "environments" / f"{env}.yaml").resolve(root)

    return settings_for


def _env(ctx: click.Context) -> str:
    settings = settings_of(ctx)
    if settings.environment not in DEPLOYED:
        raise click.UsageError(f"choose a deployed environment with --env ({', '.join(DEPLOYED)})")
    return settings.environment


@main.group()
def release() -> None:
    """Release records (manifests/overlays/<env>/release.yaml): propose, check, apply, roll out."""


@release.command("propose")
@click.option("--model", "version", required=True, help="The version to promote (e.g. v7).")
@click.option("--by", default=None, help="Who proposes it (default: $GITHUB_ACTOR / $USER).")
@click.option(
    "--image", required=True, envvar="SHIPYARD_IMAGE", help="The image by digest (repo@sha256:...)."
)
@click.option("--git-sha", default=None, envvar="SHIPYARD_GIT_COMMIT", help="Default: the checkout's HEAD.")
@click.option(
    "--evidence",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Evidence files (JSON) inside the repository, e.g. the staging validation.",
)
@click.option(
    "--body-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the PR body here.",
)
@click.pass_context
def propose_cmd(
    ctx: click.Context,
    version: str,
    by: str | None,
    image: str,
    git_sha: str | None,
    evidence: tuple[Path, ...],
    body_out: Path | None,
) -> None:
    """Write the environment's new record (and a PR body), or refuse with the reason (exit 2)."""
    import os

    from shipyard.promotion import import_for, propose
    from shipyard.release import write_record

    env = _env(ctx)
    root = Path.cwd()
    who = by or os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown"
    proposal = propose(
        root,
        env,
        version,
        _settings_for(root),
        by=who,
        image=image,
        git_sha=git_sha,
        evidence=list(evidence),
        cache=settings_of(ctx).state_dir / "cache" / "models",
    )
    copied = import_for(env, version, _settings_for(root))  # only after every check passed
    write_record(proposal.path, proposal.record)
    if body_out is not None:
        body_out.parent.mkdir(parents=True, exist_ok=True)
        body_out.write_text(proposal.body)
    if copied:
        click.echo(f"copied {version} into {env}'s registry: {copied}")
    click.echo(
        f"wrote {proposal.path.relative_to(root)} ({env} -> {version})"
        + (f"; PR body: {body_out}" if body_out else "")
    )


@release.command("check")
@click.option(
    "--offline", is_flag=True, help="Only what needs no registry, cluster or image registry access."
)
@click.option("--env", "envs", multiple=True, type=click.Choice(DEPLOYED), help="Default: every environment.")
def check_cmd(offline: bool, envs: tuple[str, ...]) -> None:
    """Every record valid and every hash matching what it points at (the PR workflow's gate)."""
    from shipyard.promotion import check_record

    root = Path.cwd()
    settings_for = _settings_for(root)
    failed = False
    for env in envs or DEPLOYED:
        result = check_record(root, env, settings_for(env), offline=offline)
        if result.problems:
            failed = True
            click.secho(f"{env}: FAILED", fg="red", bold=True)
            for problem in result.problems:
                click.echo(f"  - {problem}")
        else:
            click.secho(f"{env}: ok ({', '.join(result.checked)})", fg="green")
    if failed:
        sys.exit(1)


def _kubectl(kubeconfig: str | None) -> Any:
    from shipyard.deploy import Kubectl

    return Kubectl(kubeconfig)


@release.command("apply")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for Ready.")
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG")
@click.pass_context
def apply_cmd(ctx: click.Context, timeout: float, kubeconfig: str | None) -> None:
    """Make the cluster match the environment's record and wait until it is Ready (idempotent).

    Environments with a canary policy keep their running version here: `release rollout` moves it."""
    from shipyard.deploy import ISVC, apply_target, render_target, running_model

    env = _env(ctx)
    settings = settings_of(ctx)
    kubectl = _kubectl(kubeconfig)
    target = render_target(kubectl, Path.cwd(), settings.release.manifests, env)
    live = kubectl.get(ISVC, target.name, target.namespace)
    if settings.release.canary is not None and running_model(live) is not None:
        from shipyard.rollout import with_model

        apply_target(kubectl, target, timeout, docs=with_model(target, live or {}, None))
        click.echo(f"{env}: applied the record's platform fields; the model moves with `release rollout`")
        return
    apply_target(kubectl, target, timeout)
    click.echo(f"{env}: {target.namespace}/{target.name} Ready with {target.record.spec.model.version}")


@release.command("rollout")
@click.option(
    "--stable-metrics",
    multiple=True,
    help="/metrics URL of a stable predictor (repeat). Default: every stable pod by its IP (in-cluster).",
)
@click.option(
    "--canary-metrics",
    multiple=True,
    help="/metrics URL of a canary predictor (repeat). Default: every canary pod by its IP (in-cluster).",
)
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG")
@click.option("--step-seconds", type=float, default=None, help="Override the policy's observation window.")
@click.pass_context
def rollout_cmd(
    ctx: click.Context,
    stable_metrics: tuple[str, ...],
    canary_metrics: tuple[str, ...],
    kubeconfig: str | None,
    step_seconds: float | None,
) -> None:
    """Canary the record's version (steps of the environment's policy); roll back on a breach."""
    from shipyard.deploy import render_target
    from shipyard.rollout import MetricsSource, rollout

    env = _env(ctx)
    settings = settings_of(ctx)
    policy = settings.release.canary
    if policy is None:
        raise click.UsageError(f"{env} has no canary policy (release.canary): use `release apply`")
    if step_seconds is not None:
        policy = policy.model_copy(update={"step_seconds": step_seconds})
    kubectl = _kubectl(kubeconfig)
    target = render_target(kubectl, Path.cwd(), settings.release.manifests, env)
    metrics = MetricsSource(tuple(stable_metrics), tuple(canary_metrics), settings.serving.port)
    result = rollout(kubectl, target, policy, metrics, say=click.echo)
    if result.outcome == "rolled back":
        click.secho(
            f"error: rollout of {target.record.spec.model.version} rolled back: {result.reason}",
            fg="red",
            err=True,
        )
        sys.exit(1)
    click.echo(f"{env}: {result.outcome}")


@release.command("validate")
@click.option("--url", required=True, help="The predictor's base URL (e.g. a port-forward).")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The evidence file."
)
@click.pass_context
def validate_cmd(ctx: click.Context, url: str, out: Path) -> None:
    """Smoke, load and served accuracy against the running predictor: the evidence prod requires."""
    from shipyard.acceptance import validate
    from shipyard.promotion import version_facts
    from shipyard.registry import ModelRegistry
    from shipyard.release import load_record, record_path

    env = _env(ctx)
    settings = settings_of(ctx)
    record = load_record(record_path(Path.cwd() / settings.release.manifests, env))
    facts = version_facts(
        ModelRegistry(settings.model_registry),
        record.spec.model.version,
        settings.state_dir / "cache" / "models",
    )
    evaluated = float(facts.evaluation.get("candidate", {}).get("accuracy", 0.0))
    evidence = validate(url.rstrip("/"), record, settings, evaluated)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(evidence, indent=2) + "\n")
    for check in evidence["checks"]:
        click.echo(f"{'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['detail']}")
    click.echo(f"wrote {out}")
    if not evidence["passed"]:
        sys.exit(1)


@main.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG")
@click.option("--no-cluster", is_flag=True, help="Only the records, no cluster comparison.")
def status_cmd(as_json: bool, kubeconfig: str | None, no_cluster: bool) -> None:
    """Per environment: the record, what the cluster runs, every difference by field, model age."""
    from datetime import UTC, datetime

    from shipyard.deploy import ISVC, differences, live_model, render_target
    from shipyard.errors import ShipyardError

    root = Path.cwd()
    settings_for = _settings_for(root)
    kubectl = None if no_cluster else _kubectl(kubeconfig)
    rows: list[dict[str, Any]] = []
    for env in DEPLOYED:
        settings = settings_for(env)
        row: dict[str, Any] = {"environment": env, "record": None, "cluster": None, "drift": []}
        try:
            from shipyard.release import load_record, record_path

            record = load_record(record_path(root / settings.release.manifests, env))
        except ShipyardError as exc:
            row["error"] = str(exc)
            rows.append(row)
            continue
        spec = record.spec
        row["record"] = {
            "model": spec.model.version,
            "contentHash": spec.model.content_hash,
            "image": spec.code.image,
            "gitSha": spec.code.git_sha,
            "promotedAt": spec.promotion.at.isoformat(),
            "by": spec.promotion.by,
        }
        row["recordAgeDays"] = round((datetime.now(UTC) - spec.promotion.at).total_seconds() / 86400, 2)
        try:
            from shipyard.registry import ModelRegistry

            created = ModelRegistry(settings.model_registry).get(spec.model.version).created_at
            row["modelAgeDays"] = round(
                (datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds() / 86400, 2
            )
        except ShipyardError as exc:
            row["modelAgeDays"] = None
            row["registry"] = str(exc)
        if kubectl is not None:
            try:
                target = render_target(kubectl, root, settings.release.manifests, env)
                live = kubectl.get(ISVC, target.name, target.namespace)
            except ShipyardError as exc:
                row["cluster"] = {"error": str(exc)}
                rows.append(row)
                continue
            running = live_model(live)
            if running is None:
                row["cluster"] = {"running": None}
                row["drift"].append(f"{target.namespace}/{target.name} does not exist")
            else:
                row["cluster"] = running.model_dump(mode="json")
                row["drift"] += [
                    f"{name}: record {want}, cluster {have}"
                    for name, want, have in differences(record, running)
                ]
                if running.canary:
                    row["drift"].append(f"canary in progress: {', '.join(running.canary)}")
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        env = row["environment"]
        if row.get("error"):
            click.secho(f"{env}: {row['error']}", fg="red")
            continue
        rec = row["record"]
        age = f", model age {row['modelAgeDays']} d" if row.get("modelAgeDays") is not None else ""
        click.echo(f"{env}: record {rec['model']} ({rec['contentHash'][:12]}) at {rec['gitSha'][:12]}{age}")
        if kubectl is None:
            continue
        if row["drift"]:
            for item in row["drift"]:
                click.secho(f"  DRIFT {item}", fg="yellow")
        elif row["cluster"] and not row["cluster"].get("error"):
            click.secho(f"  cluster matches the record (ready={row['cluster'].get('ready')})", fg="green")
        else:
            click.secho(f"  cluster: {row['cluster']}", fg="red")
