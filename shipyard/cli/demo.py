"""`shipyard demo drift`: monitoring and continuous training, the whole story on one machine.

1. data: the project's generator writes a history with a drifted period (its own options, `--set`);
2. champion: the training pipeline (kfp.local) on the events up to `--train-end`;
3. serving: the champion in the real model server (`serving.process.ServerProcess`); the events after
   `--train-end` are replayed through it day by day, each day's feature snapshots loaded into the
   online store first (a store loaded with the whole history would serve the future): first the
   days before `--drift-from`, then the drifted days up to `--until`; the server logs every request;
4. monitoring (`shipyard monitor run --retrain`) on each period: before the drift nothing is
   retrained; the drifted period asks for retraining, which trains on the newer window and
   registers a candidate (never promoted), scored against the stale champion on the new data;
5. where the reports and summaries are, and the release command to run next.

Everything lives in its own state directory (default `.shipyard/demo-drift/`, wiped at the start):
feature repo copy, data, online store, registry, request log, pipeline runs and reports; `make run`'s
are never touched. `<state>/settings.yaml` points every other command at it
(`shipyard --settings .shipyard/demo-drift/settings.yaml models list`).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import yaml

from shipyard.cli.data import _options
from shipyard.cli.root import main, settings_of
from shipyard.errors import ShipyardError
from shipyard.project import ProjectSpec
from shipyard.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.local_monitor import MonitorRun
    from shipyard.records import RegisterRecord

__all__ = ["DemoError", "DriftDemo", "DriftScenario", "replay", "request_rows", "run_drift_demo"]

MARKER = ".shipyard-demo"
BATCH = 16
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DemoError(ShipyardError):
    """The demo could not run, or its story did not happen (the message says which step)."""


@dataclass(frozen=True)
class DriftScenario:
    """The timeline: the champion learns up to `train_end`; the days after it are served, split at
    `drift_from` into a period before the drift and the drifted one, up to `until` (days inclusive)."""

    train_end: date
    drift_from: date
    until: date
    generator: Mapping[str, Any]  # the project's generator options that make the history drift
    retrain_window_days: float | None = None  # monitoring.retrain_window_days; None: the environment's

    def __post_init__(self) -> None:
        if not self.train_end < self.drift_from <= self.until:
            raise DemoError(
                f"--train-end ({self.train_end}) < --drift-from ({self.drift_from}) <= --until "
                f"({self.until}) must hold"
            )


@dataclass(frozen=True)
class DriftDemo:
    settings: Settings
    settings_file: Path
    champion: RegisterRecord
    before: MonitorRun
    drifted: MonitorRun
    seconds: float


# -- replaying a history through a model server ---------------------------------------------------
def request_rows(spec: ProjectSpec, events: pd.DataFrame) -> list[dict[str, Any]]:
    """Prediction requests for `events`: the project's request fields the events table holds (the
    event id among them, so monitoring can join the label that arrives later), as JSON values."""
    fields = [f.name for f in spec.request if f.type != "timestamp" and f.name in events.columns]
    rows = []
    for record in events[fields].to_dict("records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            row[str(key)] = value.item() if hasattr(value, "item") else value
        rows.append(row)
    return rows


def replay(
    url: str,
    model_name: str,
    spec: ProjectSpec,
    repo: Path,
    events: pd.DataFrame,
    loaded_until: datetime,
    yaml_name: str = "feature_store.yaml",
    batch: int = BATCH,
) -> datetime:
    """Send `events` to the model server at `url` day by day, oldest first, each day's feature
    snapshots loaded into the online store first; return how far the store is loaded.

    Raises DemoError naming the day and the answer when the server does not answer 200.
    """
    import httpx

    from shipyard import featurestore

    times = events[spec.timestamp]
    with httpx.Client(base_url=url, timeout=60) as client:
        for day, group in events.groupby(times.dt.floor("D")):
            until = day.to_pydatetime()
            if until > loaded_until:
                featurestore.materialize(repo, loaded_until, until, yaml_name)
                loaded_until = until
            rows = request_rows(spec, group)
            for i in range(0, len(rows), batch):
                answer = client.post(
                    f"/v1/models/{model_name}:predict", json={"instances": rows[i : i + batch]}
                )
                if answer.status_code != 200:
                    raise DemoError(
                        f"replaying {until:%Y-%m-%d}: the model server answered {answer.status_code}: "
                        f"{answer.text[:300]}"
                    )
    return loaded_until


# -- the demo -------------------------------------------------------------------------------------
def _fresh_state(state: Path) -> None:
    """Wipe the demo's own state directory; refuse one that is not a demo's."""
    if state.exists() and any(state.iterdir()):
        if not (state / MARKER).exists():
            raise DemoError(
                f"{state} exists and is not a demo state directory (no {MARKER} in it); choose another "
                "--state-dir or remove it"
            )
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    (state / MARKER).write_text("created by `shipyard demo drift`; wiped by its next run\n")


def demo_settings(base: Settings, state: Path, options: Mapping[str, Any]) -> Settings:
    """`base` with every local path inside `state`: a copy of the feature repo's definitions (its
    data, file registry and online store stay behind), data, registry, pipeline root, request log."""
    repo = Path(base.feature_repo)
    try:
        data_rel = Path(base.data_dir).relative_to(repo)
    except ValueError as exc:
        raise DemoError(
            f"data_dir {base.data_dir} is not inside feature_repo {repo}: the feature repo's file sources "
            "are relative to it, so the demo cannot move the data into its own state directory"
        ) from exc
    skip = {data_rel.parts[0], "__pycache__"} if data_rel.parts else {"__pycache__"}
    target = state / "feature_repo"
    shutil.copytree(
        repo, target, ignore=lambda _d, names: [n for n in names if n in skip or n.endswith(".db")]
    )
    return base.model_copy(
        update={
            "feature_repo": target,
            "data_dir": target / data_rel,
            "data": {**base.data, **options},
            "state_dir": state,
            "model_registry": str(state / "models"),
            "pipeline_root": str(state / "pipeline_root"),
        }
    )


def _day_start(day: date) -> Any:
    import pandas as pd

    return pd.Timestamp(day, tz="UTC")


def run_drift_demo(
    base: Settings, scenario: DriftScenario, state: Path, say: TextIO = sys.stdout, verbose: bool = False
) -> DriftDemo:
    """Steps 1-4 of the module docstring; returns both monitoring runs (their reports and summaries)."""
    import pandas as pd

    from pipelines.local_monitor import run_monitoring
    from pipelines.local_run import apply_features, ensure_data, run_pipeline
    from serving.process import ServerProcess
    from serving.server import config_from_settings
    from shipyard import featurestore

    started = time.perf_counter()
    _fresh_state(state)
    settings = demo_settings(base, state, scenario.generator)
    if scenario.retrain_window_days is not None:
        monitoring = settings.monitoring.model_copy(
            update={"retrain_window_days": scenario.retrain_window_days}
        )
        settings = settings.model_copy(update={"monitoring": monitoring})
    settings_file = state / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    spec = settings.spec
    say.write(f"demo: everything in {state} (make run's registry and store are untouched)\n")

    say.write("\n1/5 data\n")
    ensure_data(settings, say)
    apply_features(settings, say)

    say.write(f"\n2/5 champion: the training pipeline on the events up to {scenario.train_end}\n")
    champion = run_pipeline(settings, verbose=verbose, say=say, end=scenario.train_end.isoformat())
    if champion.status != "champion":
        raise DemoError(f"the first model {champion.version} is {champion.status} ({champion.reason})")
    say.write(f"  {champion.version}: champion ({champion.reason})\n")

    events = pd.read_parquet(settings.data_dir / spec.events.file)
    times = pd.to_datetime(events[spec.timestamp], utc=True)
    events = events.assign(**{spec.timestamp: times}).sort_values(spec.timestamp, kind="stable")
    times = events[spec.timestamp]
    first = _day_start(scenario.train_end + timedelta(days=1))
    drift, last = _day_start(scenario.drift_from), _day_start(scenario.until + timedelta(days=1))
    before = events[(times >= first) & (times < drift)]
    drifted = events[(times >= drift) & (times < last)]
    if before.empty or drifted.empty:
        raise DemoError(
            f"{settings.data_dir / spec.events.file}: no events to replay between {scenario.train_end} and "
            f"{scenario.drift_from} or between {scenario.drift_from} and {scenario.until}; check the "
            "generator's options (--set)"
        )

    # The pipeline loaded the whole history into the online store; serving must see each day's.
    featurestore.reset_local(Path(settings.feature_repo), settings.feature_store_yaml)
    config = config_from_settings(settings, champion.version, port=0, request_log_flush_seconds=0.2)
    server = ServerProcess(config, state / "server.log")
    say.write(
        f"\n3/5 serving {champion.version} with the model server; replaying {len(before)} events of "
        f"{first:%Y-%m-%d}..{drift - timedelta(days=1):%Y-%m-%d}, then {len(drifted)} of "
        f"{drift:%Y-%m-%d}..{scenario.until}, day by day\n"
    )
    server.start()
    try:
        t0 = datetime.now(UTC)
        loaded = replay(server.url, config.model_name, spec, settings.feature_repo, before, EPOCH)
        t1 = datetime.now(UTC)
        replay(server.url, config.model_name, spec, settings.feature_repo, drifted, loaded)
        t2 = datetime.now(UTC)
    finally:
        server.stop()  # flushes the request log
    say.write(f"  server stopped; requests logged in {config.request_log_dir}\n")

    say.write("\n4/5 monitoring the days before the drift\n")
    first_run = run_monitoring(
        settings, t0.isoformat(), t1.isoformat(), verbose=verbose, say=say, retrain=True
    )
    say.write(f"  decision: {first_run.summary.decision}\n")
    say.write("\n5/5 monitoring the drifted days (and continuous training if it says so)\n")
    second_run = run_monitoring(
        settings, t1.isoformat(), t2.isoformat(), verbose=verbose, say=say, retrain=True
    )
    return DriftDemo(
        settings=settings,
        settings_file=settings_file,
        champion=champion,
        before=first_run,
        drifted=second_run,
        seconds=time.perf_counter() - started,
    )


def _story_problems(demo: DriftDemo) -> list[str]:
    """What did not happen as the demo promises (empty: the whole story happened)."""
    s = demo.drifted.summary
    if s.decision != "retrain":
        return [f"the drifted period was judged {s.decision}, not retrain"]
    r = s.retrain
    if r is None or r.status != "candidate":
        return [f"continuous training did not register a gated candidate: {r.message if r else 'not run'}"]
    b = r.backtest
    if b is None:
        return ["the retrained candidate was not scored on the drifted period"]
    # The honest number: the drifted rows the candidate never trained on, where they are known.
    if b.candidate_unseen_accuracy is not None and b.served_unseen_accuracy is not None:
        candidate, stale = b.candidate_unseen_accuracy, b.served_unseen_accuracy
    else:
        candidate, stale = b.candidate_accuracy, b.served_accuracy
    if candidate <= stale:
        return [
            f"the retrained candidate does not beat the stale champion on the drifted period "
            f"({candidate:.3f} vs {stale:.3f})"
        ]
    return []


@main.group()
def demo() -> None:
    """Demonstrations on this machine, each in its own state directory."""


@demo.command("drift")
@click.option(
    "--train-end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="The champion: events up to it."
)
@click.option("--drift-from", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First drifted day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day replayed.")
@click.option(
    "--set",
    "options",
    multiple=True,
    callback=_options,
    help="A generator option as KEY=VALUE (repeatable): the ones that make the history drift.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".shipyard/demo-drift"),
    show_default=True,
    help="The demo's own state (wiped at the start).",
)
@click.option(
    "--retrain-window-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Continuous training's window (monitoring.retrain_window_days); default: the environment's.",
)
@click.option("--verbose", is_flag=True, help="Show KFP's full task output, not just progress lines.")
@click.pass_context
def drift(
    ctx: click.Context,
    train_end: datetime,
    drift_from: datetime,
    until: datetime,
    options: dict[str, str],
    state_dir: Path,
    retrain_window_days: float | None,
    verbose: bool,
) -> None:
    """Drifted data -> champion -> served and logged -> monitoring -> retrain -> a gated candidate."""
    from shipyard.cli.monitor import echo_retraining

    scenario = DriftScenario(train_end.date(), drift_from.date(), until.date(), options, retrain_window_days)
    result = run_drift_demo(settings_of(ctx), scenario, state_dir.resolve(), verbose=verbose)
    click.echo("")
    for title, run in (("before the drift", result.before), ("drifted", result.drifted)):
        s = run.summary
        click.secho(f"{title}: {s.model.version} {s.decision.upper()}", bold=True)
        for reason in s.reasons:
            if reason.severity != "info":
                click.echo(f"  {reason.severity:<7} [{reason.signal}] {reason.message}")
    click.echo("\nopen the reports:")
    for title, run in (("before the drift", result.before), ("drifted + retraining", result.drifted)):
        click.echo(f"  {title:<22} {run.report}")
        click.echo(f"  {'':<22} {run.summary_file}")
    click.echo(
        f"the demo's settings (for any other command): {result.settings_file}; took {result.seconds:.0f}s"
    )
    retrain = result.drifted.summary.retrain
    if retrain is not None:  # last: it ends with the next command, against the demo's registry
        echo_retraining(retrain, command_prefix=f"SHIPYARD_SETTINGS={result.settings_file} ")
    problems = _story_problems(result)
    if problems:
        raise DemoError("; ".join(problems))
