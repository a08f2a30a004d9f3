"""The benchmark's hand-written KServe peer: what a user writes in ten lines instead of Shipyard.

It loads the same `model.joblib` and answers a V1 request whose instances carry every model input
(the caller did the feature lookup and the on-demand features): one DataFrame, `predict_proba`,
probabilities back. No contract, no online store, no metrics, no request log: it does less than
Shipyard, which is the point of comparing with it. Started by benchmarks/serving_latency.py as
`python -m benchmarks.peers.kserve_peer --model_name NAME --model_dir DIR --http_port PORT`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import kserve
import pandas as pd
from kserve import model_server


class PredictProba(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.pipeline: Any = None

    def load(self) -> bool:
        self.pipeline = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        proba = self.pipeline.predict_proba(pd.DataFrame(payload["instances"]))
        return {"predictions": proba.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model = PredictProba(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer(enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
