"""Benchmark: `shipyard run` (the pipeline under kfp.local) vs the same steps called as plain Python.

Both arms are fresh processes started the same way, on the same (already generated) data, each with
an empty model registry, so each does the same work: Feast apply, then ingest,
validate, materialize, training set, split, train, evaluate and register. The serving demo that `shipyard run`
ends with is left out (`--no-serve-demo`): it is not a training step. The ratio (kfp.local / plain)
is what running each component as its own process with artifact passing costs. Goal: <= 1.5x.

Not a test: it prints a table and writes benchmarks/results/training_overhead.json.
Run with `make bench` or `.venv/bin/python benchmarks/training_overhead.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_arm(settings_path: Path) -> None:
    """The steps of `shipyard run`, in-process, in order, with no orchestration at all."""
    import io

    from pipelines.local_run import apply_features, ensure_data
    from shipyard import steps
    from shipyard.settings import load_settings

    s = load_settings(path=settings_path).resolve(ROOT)
    sink = io.StringIO()
    ensure_data(s, sink)
    apply_features(s, sink)
    work = Path(s.pipeline_root)
    work.mkdir(parents=True, exist_ok=True)
    names = ("events", "features", "report", "clean", "clean_features", "set", "train", "val", "test")
    p = {n: str(work / n) for n in names}
    proj, model, ev = s.project, str(work / "model"), str(work / "ev")
    out = steps.ingest_step(proj, str(s.data_dir), p["events"], p["features"])
    steps.validate_step(
        proj, p["events"], p["features"], p["report"], s.gates, p["clean"], p["clean_features"]
    )
    steps.materialize_step(proj, p["clean_features"], str(s.feature_repo), s.feature_store_yaml)
    steps.training_set_step(
        proj,
        p["clean"],
        p["clean_features"],
        str(s.feature_repo),
        s.feature_store_yaml,
        s.service,
        p["set"],
        s.gates,
    )
    steps.split_step(proj, p["set"], p["train"], p["val"], p["test"], s.train)
    steps.train_step(proj, p["train"], p["val"], model, out.data_hash, s.train)
    steps.evaluate_step(proj, model, p["test"], p["train"], "", "", s.gates, ev)
    steps.register_step(proj, model, ev, s.model_registry, s.service, out.data_hash, True, "")


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-arm", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_arm:
        plain_arm(args.plain_arm)
        return
    py = sys.executable
    shipyard = str(Path(py).with_name("shipyard"))
    subprocess.run([shipyard, "data", "generate"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            arms = {}
            for arm in ("plain", "kfp_local"):
                settings = work / f"{arm}.yaml"
                settings.write_text(
                    f"environment: local\nproject: ticket_routing\nmodel_registry: {work / arm / 'models'}\n"
                    f"pipeline_root: {work / arm / 'root'}\n"
                )
                cmd = (
                    [py, __file__, "--plain-arm", str(settings)]
                    if arm == "plain"
                    else [shipyard, "--settings", str(settings), "run", "--no-serve-demo"]
                )
                arms[arm] = _timed(cmd)
            rows.append(
                {"repeat": i, "plain_s": round(arms["plain"], 2), "kfp_local_s": round(arms["kfp_local"], 2)}
            )
            print(
                f"repeat {i}: plain {arms['plain']:.1f}s, shipyard run {arms['kfp_local']:.1f}s", flush=True
            )
    best_plain = min(r["plain_s"] for r in rows)
    best_local = min(r["kfp_local_s"] for r in rows)
    result = {
        "runs": rows,
        "best_plain_s": best_plain,
        "best_kfp_local_s": best_local,
        "ratio": round(best_local / best_plain, 2),
        "goal": 1.5,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'arm':<24} {'best s':>8}")
    print(f"{'plain Python steps':<24} {best_plain:>8.2f}")
    print(f"{'shipyard run (kfp.local)':<24} {best_local:>8.2f}")
    print(f"ratio = {result['ratio']}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
