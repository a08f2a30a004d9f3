"""Names of the files inside model and evaluation artifacts, and readers that need no ML library.

Kept dependency-free so steps that only move or describe artifacts (register, the CLI, the model
server's loader) do not pay for importing scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

MODEL_FILE: Final = "model.joblib"
TRAINING_FILE: Final = "training.json"
CONTRACT_FILE: Final = "input_contract.json"
REFERENCE_FILE: Final = "reference_stats.json"
EVALUATION_FILE: Final = "evaluation.json"
CARD_JSON: Final = "card.json"
CARD_MD: Final = "MODEL_CARD.md"


def read_json(directory: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / name).read_text())
    return loaded
