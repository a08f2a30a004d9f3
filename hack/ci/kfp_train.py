"""Upload an environment's compiled training pipeline to Kubeflow Pipelines, run it, wait for it, and
name the model version it registered. CI's staging workflow runs it (.github/workflows/staging.yaml):

    .venv/bin/shipyard --env staging pipelines compile --out build/release/training-staging.yaml
    .venv/bin/python hack/ci/kfp_train.py --env staging \\
        --package build/release/training-staging.yaml --version-name "$GITHUB_SHA-$GITHUB_RUN_ATTEMPT" \\
        --out build/release/training-run.json --evidence-dir evidence/staging

Endpoint and credentials: KF_PIPELINES_ENDPOINT (the kfp SDK's own variable), KFP_TOKEN (optional,
passed as the SDK's `existing_token`); the model registry is read with `shipyard --env E models list
--json`, so the environment's S3 credentials must be set as for every `shipyard --env E` command.

Why not the kfp CLI (kfp 2.17) alone: `kfp run create --watch` exits 0 when the run ends FAILED, and
`kfp pipeline create-version` prints the parent pipeline's id instead of the new version's, so the CLI
can neither gate on the run nor start a run of the version it just uploaded.

Exit status: 0 when the run SUCCEEDED and registered a version (its name is printed, written to
--out and to the step output `model-version`), 1 otherwise with the reason. The run summary is JSON
evidence named `training-run` (`release propose --evidence` reads a JSON object with a `name`); with
--evidence-dir it is also written to <dir>/<version>/training-run.json (step output `evidence`), the
copy that is committed with the record, since a record's evidence must be a file in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

SUCCEEDED = "SUCCEEDED"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--env", required=True, help="the Shipyard environment (staging)")
    p.add_argument("--package", required=True, type=Path, help="the compiled pipeline package")
    p.add_argument("--pipeline-name", help="default: shipyard-training-<env>")
    p.add_argument("--version-name", required=True, help="the pipeline version (CI: commit-attempt)")
    p.add_argument("--experiment", help="default: shipyard-<env>")
    p.add_argument("--run-name", help="default: the version name")
    p.add_argument("--timeout", type=int, default=7200, help="seconds to wait for the run (default 7200)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a run parameter")
    p.add_argument("--shipyard", default=".venv/bin/shipyard", help="the CLI that reads the registry")
    p.add_argument("--out", type=Path, help="write the run summary (JSON) here, also when the run failed")
    p.add_argument("--evidence-dir", type=Path, help="on success: <dir>/<version>/training-run.json")
    return p.parse_args(argv)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a VALUE that parses as JSON is passed as that value, else as a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def registered_since(models: dict[str, Any], since: datetime) -> dict[str, Any] | None:
    """The newest version in `shipyard models list --json` output created at or after `since`."""
    fresh = [
        v
        for v in models.get("versions", [])
        if v.get("created_at") and datetime.fromisoformat(v["created_at"]) >= since
    ]
    return max(fresh, key=lambda v: datetime.fromisoformat(v["created_at"]), default=None)


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from kfp import client as kfp_client  # heavy import: after argument errors

    name = args.pipeline_name or f"shipyard-training-{args.env}"
    if not args.package.is_file():
        print(f"error: no pipeline package {args.package}", file=sys.stderr)
        return 1
    kfp = kfp_client.Client(existing_token=os.environ.get("KFP_TOKEN") or None)

    pipeline_id = kfp.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = kfp.upload_pipeline(str(args.package), pipeline_name=name).pipeline_id
        print(f"created pipeline {name} ({pipeline_id})")
    version = kfp.upload_pipeline_version(
        str(args.package), pipeline_version_name=args.version_name, pipeline_id=pipeline_id
    )
    print(f"uploaded {name} version {args.version_name} ({version.pipeline_version_id})")

    experiment = kfp.create_experiment(args.experiment or f"shipyard-{args.env}")
    run = kfp.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name=args.run_name or args.version_name,
        pipeline_id=pipeline_id,
        version_id=version.pipeline_version_id,
        params=parse_params(args.param),
    )
    host = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or os.environ.get("KF_PIPELINES_ENDPOINT", "")
    url = f"{host.rstrip('/')}/#/runs/details/{run.run_id}"
    print(f"started run {run.run_id}: {url} (waiting up to {args.timeout}s)", flush=True)
    try:
        detail = kfp.wait_for_run_completion(run.run_id, timeout=args.timeout)
    except TimeoutError:
        print(f"error: run {run.run_id} did not finish within {args.timeout}s: {url}", file=sys.stderr)
        return 1

    summary: dict[str, Any] = {
        "name": "training-run",
        "environment": args.env,
        "pipeline": name,
        "pipeline_id": pipeline_id,
        "pipeline_version": args.version_name,
        "pipeline_version_id": version.pipeline_version_id,
        "run_id": run.run_id,
        "run_url": url,
        "state": detail.state,
        "created_at": _as_datetime(detail.created_at).isoformat(),
        "finished_at": _as_datetime(detail.finished_at).isoformat() if detail.finished_at else None,
        "model_version": None,
    }
    if detail.state != SUCCEEDED:
        _write(args.out, summary)
        print(f"error: run {run.run_id} ended {detail.state}: {url}", file=sys.stderr)
        return 1

    listed = subprocess.run(
        [args.shipyard, "--env", args.env, "models", "list", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    found = registered_since(json.loads(listed.stdout), _as_datetime(detail.created_at))
    if found is None:
        _write(args.out, summary)
        print(
            f"error: run {run.run_id} succeeded but registered no new version in {args.env}'s registry "
            f"(an unchanged fingerprint keeps the existing version): nothing to propose",
            file=sys.stderr,
        )
        return 1
    summary["model_version"] = found["version"]
    summary["model_status"] = found.get("status")
    summary["content_hash"] = found.get("content_hash")
    _write(args.out, summary)
    outputs = {"model-version": found["version"], "run-id": run.run_id}
    if args.evidence_dir is not None:
        evidence = args.evidence_dir / found["version"] / "training-run.json"
        _write(evidence, summary)
        outputs["evidence"] = evidence.as_posix()
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.writelines(f"{key}={value}\n" for key, value in outputs.items())
    print(f"run {run.run_id} SUCCEEDED: registered {found['version']} ({found.get('status')})")
    return 0


def _write(path: Path | None, summary: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
