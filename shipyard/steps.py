"""The training pipeline's steps as plain functions over paths and values.

Each KFP component is a thin wrapper around one function here, so the same step runs in a Kubeflow
pod, under `kfp.local`, in a unit test or in a benchmark, and the logic never depends on the
decorator. Data flows one way: every step reads its inputs and writes only its own outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard import registry
from shipyard.artifacts import (
    CARD_JSON,
    CARD_MD,
    CONTRACT_FILE,
    EVALUATION_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    TRAINING_FILE,
    read_json,
)
from shipyard.card import build_card, card_markdown
from shipyard.hashing import json_sha256
from shipyard.report import evaluation_markdown
from shipyard.schema import ACTIVITY_FILE, LABEL, PROFILE_FILE, TICKETS_FILE

if TYPE_CHECKING:
    from shipyard.params import TrainParams
    from shipyard.thresholds import Thresholds

# Heavy libraries (pandas, pandera, scikit-learn, Feast) are imported inside the step that needs them:
# each KFP component is a fresh process, and importing scikit-learn into a step that only copies
# files would cost seconds per run.


def _log(step: str, message: str) -> None:
    print(f"[shipyard:{step}] {message}", flush=True)


def ingest_step(
    source_dir: str,
    tickets: str,
    profile: str,
    activity: str,
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
) -> dict[str, Any]:
    from shipyard.ingest import ingest

    summary = ingest(Path(source_dir), Path(tickets), Path(profile), Path(activity), start, end, labels_as_of)
    _log(
        "ingest",
        f"{summary.tickets_in_window} tickets in window; rows {summary.rows}; data {summary.data_hash[:12]}",
    )
    return {
        "data_hash": summary.data_hash,
        "tickets_in_window": summary.tickets_in_window,
        "rows": summary.rows,
        "file_hashes": summary.file_hashes,
    }


def validate_step(tickets: str, profile: str, activity: str, report: str, max_violation_rate: float) -> int:
    """Write the report first, then fail: the report is most useful exactly when the data is bad."""
    import pandas as pd

    from shipyard.validation import validate

    tables = {
        TICKETS_FILE: pd.read_parquet(tickets),
        PROFILE_FILE: pd.read_parquet(profile),
        ACTIVITY_FILE: pd.read_parquet(activity),
    }
    result = validate(tables, max_violation_rate=max_violation_rate)
    Path(report).write_text(result.to_markdown())
    result.raise_for_failures()
    _log("validate", f"{sum(result.rows.values())} rows passed {len(result.findings)} tolerated findings")
    return len(result.findings)


def training_set_step(
    tickets: str,
    feature_repo: str,
    feature_store_yaml: str,
    feature_service: str,
    out: str,
    max_dropped_rate: float = 0.01,
) -> int:
    """Feast drops a ticket whose feature values are all older than a view's TTL; a few such
    tickets are normal (a new customer), many mean the feature data stopped arriving."""
    import pandas as pd

    from shipyard.errors import SourceDataError
    from shipyard.featurestore import training_frame

    entity = pd.read_parquet(tickets)
    frame = training_frame(entity, Path(feature_repo), feature_service, feature_store_yaml)
    dropped = len(entity) - len(frame)
    if dropped > max_dropped_rate * len(entity):
        raise SourceDataError(
            f"training set: {dropped} of {len(entity)} tickets have no feature values within the TTL of "
            f"feature views customer_profile/customer_activity (allowed {max_dropped_rate:.1%}); "
            "are the snapshot tables up to date?"
        )
    frame.to_parquet(out, index=False)
    _log(
        "training_set", f"{len(frame)} rows x {frame.shape[1]} columns from feature service {feature_service}"
    )
    return len(frame)


def split_step(
    training_set: str, train: str, val: str, test: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, int]:
    import pandas as pd

    from shipyard.splitting import split

    parts = split(pd.read_parquet(training_set), val_fraction, test_fraction, seed)
    parts.train.to_parquet(train, index=False)
    parts.val.to_parquet(val, index=False)
    parts.test.to_parquet(test, index=False)
    sizes = {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)}
    _log("split", f"{sizes}")
    return sizes


def train_step(train: str, val: str, model_dir: str, data_hash: str, params: TrainParams) -> dict[str, Any]:
    import pandas as pd

    from shipyard import contract, training

    train_frame, val_frame = pd.read_parquet(train), pd.read_parquet(val)
    pipeline, record = training.train(train_frame, val_frame, params, data_hash=data_hash)
    out = Path(model_dir)
    training.save(pipeline, record, out)
    (out / CONTRACT_FILE).write_text(json.dumps(contract.input_contract(train_frame), indent=2) + "\n")
    (out / REFERENCE_FILE).write_text(json.dumps(contract.reference_stats(train_frame), indent=2) + "\n")
    _log(
        "train",
        f"{record.epochs} epochs in {record.training_seconds:.1f}s; "
        f"val loss {record.val_loss[0]:.3f} -> {record.val_loss[-1]:.3f}",
    )
    return record.to_json()


def evaluate_step(
    model_dir: str, test: str, train: str, model_registry: str, thresholds: Thresholds, out_dir: str
) -> dict[str, Any]:
    import pandas as pd

    from shipyard import training
    from shipyard.evaluation import evaluate

    model = training.load_model(Path(model_dir))
    record = read_json(Path(model_dir), TRAINING_FILE)
    reg = registry.ModelRegistry(model_registry)
    champ_entry = reg.champion()
    champion = None
    if champ_entry is not None:
        champion = (champ_entry.version, training.load_model(reg.verify(champ_entry.version)))
    train_labels = pd.read_parquet(train, columns=[LABEL])[LABEL]
    result = evaluate(model, pd.read_parquet(test), train_labels, record["val_loss"], thresholds, champion)
    ev = result.to_json()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(json.dumps(ev, indent=2) + "\n")
    verdict = (
        "passed" if result.passed else "REJECTED: " + ", ".join(g.name for g in result.gates if not g.passed)
    )
    _log(
        "evaluate",
        f"accuracy {result.candidate.accuracy:.3f}, macro-F1 {result.candidate.macro_f1:.3f}; {verdict}",
    )
    return ev


def fingerprint(
    data_hash: str, training_record: dict[str, Any], feature_service: str, thresholds: dict[str, Any]
) -> str:
    """What makes two runs "the same": data, params, code and gates. Same fingerprint, no new version."""
    return json_sha256(
        {
            "data": data_hash,
            "params": training_record["params"],
            "code": training_record["git_commit"],
            "libraries": training_record["libraries"],
            "feature_service": feature_service,
            "thresholds": thresholds,
        }
    )


def register_step(
    model_dir: str,
    evaluation_dir: str,
    model_registry: str,
    feature_service: str,
    data_hash: str,
    promote: bool,
) -> dict[str, Any]:
    mdir, edir = Path(model_dir), Path(evaluation_dir)
    record = read_json(mdir, TRAINING_FILE)
    ev = json.loads((edir / EVALUATION_FILE).read_text())
    rows = {**record["rows"], "test": ev["test_rows"]}
    card = build_card(record, ev, feature_service, data_hash, rows)
    passed = bool(ev["passed"])
    failed = [g["name"] for g in ev["gates"] if not g["passed"]]
    reason = "all gates passed" if passed else "failed gates: " + ", ".join(failed)
    files: dict[str, Path | bytes] = {
        MODEL_FILE: mdir / MODEL_FILE,
        TRAINING_FILE: mdir / TRAINING_FILE,
        CONTRACT_FILE: mdir / CONTRACT_FILE,
        REFERENCE_FILE: mdir / REFERENCE_FILE,
        EVALUATION_FILE: edir / EVALUATION_FILE,
        CARD_JSON: (json.dumps(card, indent=2) + "\n").encode(),
    }
    reg = registry.ModelRegistry(model_registry)
    fp = fingerprint(data_hash, record, feature_service, ev["thresholds"])
    result = reg.register(
        files,
        fingerprint=fp,
        passed=passed,
        promote=promote,
        accuracy=ev["candidate"]["accuracy"],
        macro_f1=ev["candidate"]["macro_f1"],
        feature_service=feature_service,
        reason=reason,
        render=lambda version, status: {CARD_MD: card_markdown(card, version, status).encode()},
    )
    entry = result.entry
    what = "registered" if result.created else "unchanged (same data, params, code): kept"
    _log("register", f"{what} {entry.version} as {entry.status} ({entry.reason})")
    return {
        "version": entry.version,
        "status": entry.status,
        "created": result.created,
        "reason": entry.reason,
        "path": str(result.path),
        "card": str(result.path / CARD_MD),
        "evaluation_markdown": evaluation_markdown(ev),
        "timestamp": time.time(),
    }
