"""The GitHub Actions workflows (.github/workflows/) follow the project's CI rules, checked on the YAML.

The rules (docs/promotion.md, "Rules for the workflows"):

- top-level `permissions: {}`; every job grants its own permissions explicitly (a mapping);
- every `uses:` is pinned to a full 40-hex commit SHA, with the release it is as a `# vX.Y.Z` comment;
- every `run:` is one line that starts with `make`, the shipyard CLI (`.venv/bin/shipyard`), a script
  under hack/ (`bash hack/...`, `.venv/bin/python hack/...`) or `git diff --exit-code`, optionally run
  as root through `sudo -E env "PATH=$PATH"`; it holds no `${{ }}` expression (values, and secrets
  above all, reach commands through `env:`), so nothing runs in CI that cannot be run locally;
- every checkout says whether it keeps its credentials (`persist-credentials`);
- the deploy workflows (staging, prod) set `concurrency` per environment and never cancel a deploy in
  progress; the job that deploys to prod runs in the `prod` environment (its required reviewers are a
  repository setting);
- the scripts, Makefile targets and shipyard commands and options the steps name exist.

`violations()` is also run on a deliberately bad workflow, so each rule is shown to fail.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY_WORKFLOWS = {"staging.yaml": "staging", "prod.yaml": "prod"}
PROD_RECORD = "manifests/overlays/prod/release.yaml"

AS_ROOT = 'sudo -E env "PATH=$PATH" '
RUN_PREFIXES = (
    "make ",
    ".venv/bin/shipyard ",
    ".venv/bin/python hack/",
    "bash hack/",
    "git diff --exit-code",
)
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
VERSION_COMMENT = re.compile(r"^\s+#\s+v\d+\.\d+\.\d+\s*$")


def load(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), "a workflow is a mapping"
    if True in doc:  # PyYAML reads the key `on` as the boolean true (YAML 1.1)
        doc["on"] = doc.pop(True)
    return doc


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = doc.get("jobs") or {}
    assert isinstance(found, dict)
    return found


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found = job.get("steps") or []
    assert isinstance(found, list)
    return found


def run_command(run: str) -> str:
    """The command of a `run:` without the optional root prefix."""
    return run[len(AS_ROOT) :] if run.startswith(AS_ROOT) else run


def violations(text: str, *, deploy_env: str | None = None) -> list[str]:
    """Every hygiene rule this workflow breaks, as readable lines (empty: none)."""
    problems: list[str] = []
    doc = load(text)
    if doc.get("permissions") != {}:
        problems.append(f"top-level permissions must be {{}}, not {doc.get('permissions')!r}")
    for n, line in enumerate(text.splitlines(), 1):
        m = USES_LINE.match(line)
        if m and not VERSION_COMMENT.match(m["rest"]):
            problems.append(f"line {n}: `uses: {m['ref']}` needs its release as a `# vX.Y.Z` comment")
    for name, job in jobs(doc).items():
        if not isinstance(job.get("permissions"), dict):
            problems.append(
                f"job {name}: permissions must be an explicit mapping, not {job.get('permissions')!r}"
            )
        if "uses" in job and not (job["uses"].startswith("./") or SHA_PIN.match(job["uses"])):
            problems.append(f"job {name}: `uses: {job['uses']}` is not pinned to a 40-hex commit SHA")
        for i, step in enumerate(steps(job)):
            where = f"job {name}, step {step.get('name') or i + 1}"
            uses, run = step.get("uses"), step.get("run")
            if (uses is None) == (run is None):
                problems.append(f"{where}: a step has exactly one of uses/run")
            if uses is not None and not (uses.startswith("./") or SHA_PIN.match(uses)):
                problems.append(f"{where}: `uses: {uses}` is not pinned to a 40-hex commit SHA")
            checkout = isinstance(uses, str) and uses.startswith("actions/checkout@")
            if checkout and "persist-credentials" not in (step.get("with") or {}):
                problems.append(f"{where}: checkout must set persist-credentials explicitly")
            if run is not None:
                problems += [f"{where}: {p}" for p in run_problems(str(run))]
    if deploy_env is not None:
        concurrency = doc.get("concurrency")
        if not isinstance(concurrency, dict) or deploy_env not in str(concurrency.get("group", "")):
            problems.append(
                f"a deploy workflow needs concurrency with a group per environment ({deploy_env})"
            )
        elif concurrency.get("cancel-in-progress") is not False:
            problems.append(
                "a deploy workflow must not cancel a deploy in progress (cancel-in-progress: false)"
            )
    for name, job in jobs(doc).items():
        for step in steps(job):
            run = run_command(str(step.get("run", "")))
            if re.search(r"--env prod release (apply|rollout)\b", run) and environment(job) != "prod":
                problems.append(f"job {name} deploys to prod but does not run in the `prod` environment")
    return problems


def run_problems(run: str) -> list[str]:
    problems = []
    if "\n" in run.strip():
        problems.append("run: must be one command (put multi-line logic in a script or Makefile target)")
    if "${{" in run:
        problems.append("run: must hold no ${{ }} expression (pass values through env:)")
    command = run_command(run.strip())
    if not command.startswith(RUN_PREFIXES):
        problems.append(f"run: {command.split()[0] if command else '(empty)'!r} is not one of {RUN_PREFIXES}")
    return problems


def environment(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def all_runs() -> list[tuple[str, str]]:
    out = []
    for path in workflow_files():
        for job in jobs(load(path.read_text())).values():
            out += [(path.name, run_command(str(s["run"]).strip())) for s in steps(job) if "run" in s]
    return out


# -- the workflows -----------------------------------------------------------------------------------
def test_the_three_workflows_exist() -> None:
    assert {p.name for p in workflow_files()} >= {"pr.yaml", "staging.yaml", "prod.yaml"}


@pytest.mark.parametrize("name", ["pr.yaml", "staging.yaml", "prod.yaml"])
def test_workflow_follows_the_rules(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert violations(text, deploy_env=DEPLOY_WORKFLOWS.get(name)) == []


def test_triggers() -> None:
    pr = load((WORKFLOWS / "pr.yaml").read_text())["on"]
    assert "pull_request" in pr
    staging = load((WORKFLOWS / "staging.yaml").read_text())["on"]["push"]
    assert staging["branches"] == ["main"]
    # A merged promotion PR (prod's record + its evidence) and the bot's staging record do not retrain.
    assert PROD_RECORD in staging["paths-ignore"]
    assert "manifests/overlays/staging/release.yaml" in staging["paths-ignore"]
    prod = load((WORKFLOWS / "prod.yaml").read_text())["on"]["push"]
    assert prod["branches"] == ["main"] and prod["paths"] == [PROD_RECORD]


def test_prod_deploys_only_in_the_prod_environment() -> None:
    prod_jobs = jobs(load((WORKFLOWS / "prod.yaml").read_text()))
    assert prod_jobs and all(environment(job) == "prod" for job in prod_jobs.values())
    runs = [run for name, run in all_runs() if name == "prod.yaml"]
    assert any("--env prod release apply" in r for r in runs)
    assert any("--env prod release rollout" in r for r in runs)


def test_deploy_concurrency_groups_differ() -> None:
    groups = {load((WORKFLOWS / n).read_text())["concurrency"]["group"] for n in DEPLOY_WORKFLOWS}
    assert len(groups) == len(DEPLOY_WORKFLOWS)


def test_named_scripts_and_make_targets_exist() -> None:
    targets = set(re.findall(r"^([A-Za-z0-9_-]+):", (ROOT / "Makefile").read_text(), re.M))
    for name, run in all_runs():
        words = shlex.split(run)
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"{name}: {run}: no such Makefile target"
        scripts = [w for w in words[:2] if w.startswith("hack/")]
        for script in scripts:
            assert (ROOT / script).is_file(), f"{name}: {run}: no {script}"


def test_shipyard_commands_match_the_cli() -> None:
    """Every `.venv/bin/shipyard ...` a workflow runs names real commands and options, and gives every
    required option: the workflows are written against the CLI, not against its documentation."""
    from shipyard.cli import main

    checked = 0
    for name, run in all_runs():
        if run.startswith(".venv/bin/shipyard "):
            problems = cli_problems(main, shlex.split(run)[1:])
            assert problems == [], f"{name}: {run}: {problems}"
            checked += 1
    assert checked >= 10


def cli_problems(command: click.Command, argv: list[str]) -> list[str]:
    """Options, flags and subcommands of `argv` against the click command tree (values not converted)."""
    ctx = click.Context(command, info_name=command.name)
    args = list(argv)
    while True:
        options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        given: set[str] = set()
        while args and args[0].startswith("-"):
            opt, _, inline = args.pop(0).partition("=")
            param = options.get(opt)
            if param is None:
                return [f"{command.name}: no option {opt}"]
            given.add(param.name or opt)
            if not param.is_flag and not inline:
                if not args:
                    return [f"{command.name}: {opt} needs a value"]
                args.pop(0)
        missing = [
            p.opts[0]
            for p in command.params
            if isinstance(p, click.Option) and p.required and p.name not in given and not p.envvar
        ]
        if missing:
            return [f"{command.name}: missing required {', '.join(missing)}"]
        if not isinstance(command, click.Group):
            return [f"{command.name}: unexpected arguments {args}"] if args else []
        if not args:
            return [f"{command.name}: no subcommand"]
        sub = command.get_command(ctx, args[0])
        if sub is None:
            return [f"{command.name}: no command {args[0]!r}"]
        command, args = sub, args[1:]


# -- the rules fail when broken --------------------------------------------------------------------
BAD = """\
name: bad
on: push
permissions: write-all
concurrency:
  group: deploy-prod
  cancel-in-progress: true
jobs:
  deploy:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97
      - run: |
          echo "${{ secrets.TOKEN }}" > token
          curl -sSf https://example.com/install.sh | bash
      - run: .venv/bin/shipyard --env prod release apply --timeout 600
"""


def test_the_rules_catch_a_bad_workflow() -> None:
    found = "\n".join(violations(BAD, deploy_env="prod"))
    for expected in (
        "top-level permissions must be {}",
        "`uses: actions/checkout@v4` needs its release",
        "job deploy: permissions must be an explicit mapping",
        "`uses: actions/checkout@v4` is not pinned",
        "checkout must set persist-credentials",
        "line 12: `uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97` needs its release",
        "run: must be one command",
        "run: must hold no ${{ }} expression",
        "run: 'echo' is not one of",
        "must not cancel a deploy in progress",
        "job deploy deploys to prod but does not run in the `prod` environment",
    ):
        assert expected in found, f"not caught: {expected}\n{found}"


def test_cli_check_catches_unknown_and_missing_options() -> None:
    from shipyard.cli import main

    assert cli_problems(main, ["--env", "prod", "release", "apply", "--timeout", "600"]) == []
    assert cli_problems(main, ["release", "aply"]) == ["release: no command 'aply'"]
    assert cli_problems(main, ["release", "apply", "--wait"]) == ["apply: no option --wait"]
    assert cli_problems(main, ["release", "validate", "--out", "x.json"]) == [
        "validate: missing required --url"
    ]


# -- hack/ci/kfp_train.py: the run's outcome decides, and the version it registered is named -----------
def kfp_train() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kfp_train", ROOT / "hack" / "ci" / "kfp_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class FakeKfp:
    """The kfp.Client calls kfp_train makes, recorded; the run ends in `state`."""

    state = "SUCCEEDED"
    calls: list[str] = []

    def __init__(self, existing_token: str | None = None) -> None:
        FakeKfp.calls = [f"token={existing_token}"]

    def get_pipeline_id(self, name: str) -> str | None:
        return None

    def upload_pipeline(self, package: str, pipeline_name: str) -> _Obj:
        self.calls.append(f"create {pipeline_name}")
        return _Obj(pipeline_id="p1")

    def upload_pipeline_version(self, package: str, pipeline_version_name: str, pipeline_id: str) -> _Obj:
        self.calls.append(f"version {pipeline_version_name} of {pipeline_id}")
        return _Obj(pipeline_version_id="pv1")

    def create_experiment(self, name: str) -> _Obj:
        return _Obj(experiment_id="e1")

    def run_pipeline(self, **kw: Any) -> _Obj:
        self.calls.append(f"run {kw['pipeline_id']}/{kw['version_id']} params={kw['params']}")
        return _Obj(run_id="r1")

    def wait_for_run_completion(self, run_id: str, timeout: int) -> _Obj:
        return _Obj(state=self.state, created_at="2026-11-24T10:00:00+00:00", finished_at=None)


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED"])
def test_kfp_train_gates_on_the_run(state: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kfp.client

    module = kfp_train()
    FakeKfp.state = state
    monkeypatch.setattr(kfp.client, "Client", FakeKfp)
    listing = {
        "versions": [
            {"version": "v1", "created_at": "2026-11-23T09:00:00+00:00", "status": "retired"},
            {"version": "v2", "created_at": "2026-11-24T10:20:00+00:00", "status": "candidate"},
        ]
    }
    monkeypatch.setattr(
        module.subprocess, "run", lambda *a, **k: _Obj(stdout=json.dumps(listing), returncode=0)
    )
    package = tmp_path / "pipeline.yaml"
    package.write_text("{}")
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("KFP_TOKEN", "")
    argv = ["--env", "staging", "--package", str(package), "--version-name", "abc-1", "--param", "n=3"]
    argv += ["--out", str(tmp_path / "run.json"), "--evidence-dir", str(tmp_path / "evidence")]

    code = module.main(argv)

    summary = json.loads((tmp_path / "run.json").read_text())
    assert FakeKfp.calls == [
        "token=None",
        "create shipyard-training-staging",
        "version abc-1 of p1",
        "run p1/pv1 params={'n': 3}",
    ]
    assert summary["name"] == "training-run" and summary["state"] == state
    if state == "SUCCEEDED":
        assert code == 0 and summary["model_version"] == "v2"
        assert json.loads((tmp_path / "evidence" / "v2" / "training-run.json").read_text()) == summary
        assert outputs.read_text().splitlines() == [
            "model-version=v2",
            "run-id=r1",
            f"evidence={(tmp_path / 'evidence' / 'v2' / 'training-run.json').as_posix()}",
        ]
    else:
        assert code == 1 and summary["model_version"] is None and not outputs.exists()


def test_kfp_train_finds_no_version_from_before_the_run() -> None:
    from datetime import datetime

    module = kfp_train()
    old = {"versions": [{"version": "v1", "created_at": "2026-11-23T09:00:00+00:00"}]}
    assert module.registered_since(old, datetime.fromisoformat("2026-11-24T10:00:00+00:00")) is None
    assert module.parse_params(["a=1", "b=x", 'c={"k": true}']) == {"a": 1, "b": "x", "c": {"k": True}}
