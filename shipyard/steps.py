"""The training pipeline's steps as plain functions over paths and values.

Each KFP component is a thin wrapper around one function here, so the same step runs in a Kubeflow
pod, under `kfp.local`, in a unit test or in a benchmark, and the logic never depends on the
decorator. Data flows one way: every step reads its inputs and writes only its own outputs; the
project (a package name) tells each step what the columns, labels and rules are.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from shipyard.artifacts import (
    CARD_JSON,
    CARD_MD,
    CONTRACT_FILE,
    EVALUATION_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    TRAINING_FILE,
)
from shipyard.errors import RegistryError, ShipyardError, SourceDataError
from shipyard.hashing import json_sha256
from shipyard.params import Gates, TrainParams
from shipyard.project import load_project
from shipyard.records import (
    EvaluationRecord,
    IngestRecord,
    RegisterRecord,
    TrainingRecord,
    emit,
    read_record,
)

# Heavy libraries (pandas, pandera, scikit-learn, Feast) are imported inside the step that needs them:
# each KFP component is a fresh process, and importing scikit-learn into a step that only copies
# files would cost seconds per run.

P = ParamSpec("P")
T = TypeVar("T")


def step(name: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Report an expected failure as a structured event before the process dies with it."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except ShipyardError as exc:
                emit(name, f"{type(exc).__name__}: {exc}", kind="error", error=type(exc).__name__)
                raise

        return run

    return wrap


@step("ingest")
def ingest_step(
    project: str,
    source_dir: str,
    events: str,
    features: str,
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
) -> IngestRecord:
    from shipyard.ingest import ingest

    spec = load_project(project)
    s = ingest(spec, Path(source_dir), Path(events), Path(features), start, end, labels_as_of)
    emit("ingest", f"{s.events_in_window} events in window; rows {s.rows}; data {s.data_hash[:12]}")
    return IngestRecord(
        rows=s.rows, file_hashes=s.file_hashes, data_hash=s.data_hash, events_in_window=s.events_in_window
    )


def _tables(spec: Any, events: str, features: str) -> dict[str, Any]:
    import pandas as pd

    tables = {spec.events_table: pd.read_parquet(events)}
    for name, table in spec.feature_tables.items():
        tables[name] = pd.read_parquet(Path(features) / table.file)
    return tables


@step("validate")
def validate_step(
    project: str,
    events: str,
    features: str,
    report: str,
    gates: Gates,
    clean_events: str,
    clean_features: str,
) -> int:
    """Write the report first, then fail: the report is most useful exactly when the data is bad.

    On success, the clean copies (rows a tolerated finding names removed) are the only tables
    later steps read: training, and materialization into the online store.
    """
    from shipyard.project import import_object
    from shipyard.validation import ValidationRules, validate

    spec = load_project(project)
    rules = import_object(spec.validation, f"project {spec.name}: validation rules")
    if not isinstance(rules, ValidationRules):
        raise SourceDataError(f"{spec.validation} is a {type(rules).__name__}, not ValidationRules")
    tables = _tables(spec, events, features)
    result = validate(tables, rules, max_violation_rate=gates.max_violation_rate)
    Path(report).write_text(result.to_markdown())
    result.raise_for_failures()
    clean = result.clean(tables)
    clean[spec.events_table].to_parquet(clean_events, index=False)
    Path(clean_features).mkdir(parents=True, exist_ok=True)
    for name, table in spec.feature_tables.items():
        clean[name].to_parquet(Path(clean_features) / table.file, index=False)
    excluded = {name: len(result.excluded(name)) for name in tables if result.excluded(name)}
    emit(
        "validate",
        f"{sum(result.rows.values())} rows checked; {len(result.findings)} tolerated findings; "
        f"excluded rows {excluded or 'none'}",
    )
    return sum(excluded.values())


@step("materialize")
def materialize_step(project: str, features: str, feature_repo: str, feature_store_yaml: str) -> str:
    """Only validated, cleaned snapshots reach the online store the model server reads."""
    from shipyard.featurestore import materialize_validated

    spec = load_project(project)
    start, end = materialize_validated(spec, Path(feature_repo), Path(features), feature_store_yaml)
    span = f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
    emit("materialize", f"online store loaded with validated features {span}")
    return span


@step("training_set")
def training_set_step(
    project: str,
    events: str,
    features: str,
    feature_repo: str,
    feature_store_yaml: str,
    feature_service: str,
    out: str,
    gates: Gates,
) -> int:
    """Feast drops an event whose feature values are all older than a view's TTL; a few such events
    are normal (a new entity), many mean the feature data stopped arriving."""
    import pandas as pd

    from shipyard.featurestore import training_frame

    spec = load_project(project)
    entity = pd.read_parquet(events)
    frame = training_frame(
        entity, spec, Path(feature_repo), Path(features), feature_service, feature_store_yaml
    )
    dropped = len(entity) - len(frame)
    if dropped > gates.max_dropped_rate * len(entity):
        raise SourceDataError(
            f"training set: {dropped} of {len(entity)} events have no feature values within the TTL of "
            f"the feature views of {feature_service} (allowed {gates.max_dropped_rate:.1%}); "
            "are the feature tables up to date?"
        )
    frame.to_parquet(out, index=False)
    emit(
        "training_set", f"{len(frame)} rows x {frame.shape[1]} columns from feature service {feature_service}"
    )
    return len(frame)


@step("split")
def split_step(
    project: str, training_set: str, train: str, val: str, test: str, params: TrainParams
) -> dict[str, int]:
    import pandas as pd

    from shipyard.splitting import split

    spec = load_project(project)
    parts = split(
        pd.read_parquet(training_set),
        spec.label,
        spec.classes,
        params.val_fraction,
        params.test_fraction,
        params.seed,
    )
    parts.train.to_parquet(train, index=False)
    parts.val.to_parquet(val, index=False)
    parts.test.to_parquet(test, index=False)
    sizes = {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)}
    emit("split", f"{sizes}")
    return sizes


@step("train")
def train_step(
    project: str, train: str, val: str, model_dir: str, data_hash: str, params: TrainParams
) -> TrainingRecord:
    import pandas as pd

    from shipyard import contract, training

    spec = load_project(project)
    train_frame, val_frame = pd.read_parquet(train), pd.read_parquet(val)
    pipeline, record = training.train(train_frame, val_frame, spec, params, data_hash=data_hash)
    out = Path(model_dir)
    training.save(pipeline, record, out)
    inputs = training.ModelInputs.from_json(record.inputs)
    (out / CONTRACT_FILE).write_text(
        json.dumps(contract.input_contract(train_frame, spec, inputs), indent=2) + "\n"
    )
    (out / REFERENCE_FILE).write_text(
        json.dumps(contract.reference_stats(train_frame, spec, inputs), indent=2) + "\n"
    )
    emit(
        "train",
        f"{record.epochs} epochs in {record.training_seconds:.1f}s; "
        f"val loss {record.val_loss[0]:.3f} -> {record.val_loss[-1]:.3f}",
    )
    return record


def open_version_dir(uri: str, workdir: Path) -> Path:
    """A verified local copy of a registered version directory (a path, file:// or s3:// URI).

    The directory is named by its content hash, so the hash it must match comes from the URI itself.
    """
    from shipyard.registry import verify_version_dir
    from shipyard.storage import store_for

    expected = uri.rstrip("/").rsplit("/", 1)[-1]
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
    else:
        path = workdir / expected
        store_for(uri).download_prefix("", path)
    verify_version_dir(path, expected)
    return path


@step("evaluate")
def evaluate_step(
    project: str,
    model_dir: str,
    test: str,
    train: str,
    champion_uri: str,
    champion_version: str,
    gates: Gates,
    out_dir: str,
) -> EvaluationRecord:
    """The champion is an input (its version directory), so the result depends only on the inputs."""
    import pandas as pd

    from shipyard import training
    from shipyard.evaluation import evaluate

    spec = load_project(project)
    record = read_record(TrainingRecord, Path(model_dir) / TRAINING_FILE)
    model = training.load_model(Path(model_dir))
    with tempfile.TemporaryDirectory(prefix="shipyard-champion-") as tmp:
        champion = None
        if champion_uri:
            cdir = open_version_dir(champion_uri, Path(tmp))
            meta = json.loads((cdir / "version.json").read_text())
            if meta.get("project") != project or list(meta.get("labels", [])) != list(spec.classes):
                raise SourceDataError(
                    f"champion {champion_version or champion_uri}: it belongs to project "
                    f"{meta.get('project')!r} with labels {meta.get('labels')}, not {project!r} with "
                    f"{list(spec.classes)}; give each project its own model registry"
                )
            champion_record = read_record(TrainingRecord, cdir / TRAINING_FILE)
            champion = (
                champion_version or "champion",
                training.load_model(cdir),
                training.ModelInputs.from_json(champion_record.inputs),
            )
        result = evaluate(
            model,
            training.ModelInputs.from_json(record.inputs),
            pd.read_parquet(test),
            pd.read_parquet(train),
            record.val_loss,
            spec,
            gates,
            champion,
        )
    ev = EvaluationRecord.model_validate(result.to_json())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(ev.model_dump_json(indent=2) + "\n")
    verdict = "passed" if ev.passed else "REJECTED: " + ", ".join(ev.failed_gates)
    emit(
        "evaluate",
        f"accuracy {ev.candidate['accuracy']:.3f}, macro-F1 {ev.candidate['macro_f1']:.3f}; {verdict}",
    )
    return ev


def fingerprint(
    project: str, data_hash: str, record: TrainingRecord, feature_service: str, thresholds: dict[str, Any]
) -> str:
    """What makes two runs "the same": data, params, code and gates. Same fingerprint, no new version."""
    return json_sha256(
        {
            "project": project,
            "data": data_hash,
            "params": record.params,
            "hyperparameters": record.hyperparameters,
            "code": record.git_commit,
            "libraries": record.libraries,
            "feature_service": feature_service,
            "thresholds": thresholds,
        }
    )


@step("register")
def register_step(
    project: str,
    model_dir: str,
    evaluation_dir: str,
    model_registry: str,
    feature_service: str,
    data_hash: str,
    promote: bool,
    champion_version: str = "",
) -> RegisterRecord:
    from shipyard import registry
    from shipyard.card import build_card, card_markdown
    from shipyard.hashing import file_sha256
    from shipyard.report import evaluation_markdown

    spec = load_project(project)
    mdir, edir = Path(model_dir), Path(evaluation_dir)
    record = read_record(TrainingRecord, mdir / TRAINING_FILE)
    ev = read_record(EvaluationRecord, edir / EVALUATION_FILE)
    ev_json = ev.model_dump()
    rows = {**record.rows, "test": ev.test_rows}
    card = build_card(spec, record.model_dump(), ev_json, feature_service, data_hash, rows)
    reason = "all gates passed" if ev.passed else "failed gates: " + ", ".join(ev.failed_gates)
    files: dict[str, Path | bytes] = {
        MODEL_FILE: mdir / MODEL_FILE,
        TRAINING_FILE: mdir / TRAINING_FILE,
        CONTRACT_FILE: mdir / CONTRACT_FILE,
        REFERENCE_FILE: mdir / REFERENCE_FILE,
        EVALUATION_FILE: edir / EVALUATION_FILE,
        CARD_JSON: (json.dumps(card, indent=2) + "\n").encode(),
        CARD_MD: card_markdown(card).encode(),
    }
    fp = fingerprint(project, data_hash, record, feature_service, ev.thresholds)
    metadata = {
        "name": spec.name,
        "project": project,
        "feature_service": feature_service,
        "labels": list(spec.classes),
        "data_hash": data_hash,
        "input_contract_sha256": file_sha256(mdir / CONTRACT_FILE),
        "metrics": {"accuracy": ev.candidate["accuracy"], "macro_f1": ev.candidate["macro_f1"]},
    }
    reg = registry.ModelRegistry(model_registry)
    # What killed registrations left behind (invisible, never served) is cleaned once it is older
    # than the grace period; a younger one may be a registration in progress right now.
    removed = reg.clean_orphans()
    if removed:
        emit("register", f"removed {len(removed)} leftover(s) of interrupted registrations")
    try:
        result = reg.register(
            files,
            metadata=metadata,
            fingerprint=fp,
            passed=ev.passed,
            promote=promote,
            accuracy=ev.candidate["accuracy"],
            macro_f1=ev.candidate["macro_f1"],
            feature_service=feature_service,
            reason=reason,
            evaluated_against=champion_version or None,
        )
    except OSError as exc:
        # A full disk, a permission or a network failure mid-write: nothing became visible (the
        # index was not committed), and the message says where and why instead of a traceback.
        raise RegistryError(
            f"registering into {model_registry} failed: {exc.strerror or exc}; nothing was registered"
        ) from exc
    entry = result.entry
    what = "registered" if result.created else "unchanged (same data, params, code): kept"
    emit("register", f"{what} {entry.version} as {entry.status} ({entry.reason})")
    return RegisterRecord(
        version=entry.version,
        status=entry.status,
        created=result.created,
        reason=entry.reason,
        uri=result.uri,
        content_hash=entry.content_hash,
        card=f"{result.uri.rstrip('/')}/{CARD_MD}",
        evaluation_markdown=evaluation_markdown(ev_json),
    )
