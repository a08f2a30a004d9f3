"""The input contract and reference statistics, derived from the training data.

Both are stored with the model version: the server validates requests against the contract it was
trained with (not against today's code), and monitoring compares live traffic to the reference
statistics of the exact training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipyard.artifacts import CONTRACT_FILE, REFERENCE_FILE
from shipyard.features import TEXT_FEATURES
from shipyard.schema import (
    CATEGORICAL_FEATURES,
    DEPARTMENTS,
    ENTITY_KEY,
    LABEL,
    MAX_TEXT_LENGTH,
    NUMERIC_BATCH_FEATURES,
    TEXT,
)

__all__ = ["CONTRACT_FILE", "MAX_BATCH", "REFERENCE_FILE", "input_contract", "reference_stats"]

MAX_BATCH = 256
_BINS = 10


def input_contract(train: pd.DataFrame) -> dict[str, Any]:
    """What a caller must send, and what the looked-up features looked like in training."""
    lengths = train[TEXT].astype(str).str.len()
    features: dict[str, Any] = {}
    for col in CATEGORICAL_FEATURES:
        features[col] = {
            "type": "string",
            "categories": sorted(str(v) for v in train[col].dropna().unique()),
            "nullable": True,
        }
    for col in (*NUMERIC_BATCH_FEATURES, *TEXT_FEATURES):
        values = pd.to_numeric(train[col], errors="coerce")
        features[col] = {
            "type": "integer" if pd.api.types.is_integer_dtype(train[col]) else "number",
            "min": float(values.min()),
            "max": float(values.max()),
            "nullable": bool(values.isna().any()),
        }
    return {
        "version": 1,
        "request": {
            ENTITY_KEY: {"type": "integer", "required": True, "min": 1},
            TEXT: {
                "type": "string",
                "required": True,
                "min_length": 1,
                "max_length": int(min(MAX_TEXT_LENGTH, max(int(lengths.max()) * 4, 200))),
            },
            "timestamp": {"type": "string", "format": "date-time", "required": False},
        },
        "max_batch": MAX_BATCH,
        "labels": list(DEPARTMENTS),
        "features": features,
    }


def reference_stats(train: pd.DataFrame) -> dict[str, Any]:
    """Per-feature distributions (decile bins, shares, missing rates) for drift detection."""
    stats: dict[str, Any] = {"rows": len(train), "features": {}}
    for col in (*NUMERIC_BATCH_FEATURES, *TEXT_FEATURES):
        values = pd.to_numeric(train[col], errors="coerce").astype("float64")
        present = values.dropna().to_numpy()
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1))) if present.size else np.array([])
        )
        counts, _ = np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), None)
        stats["features"][col] = {
            "kind": "numeric",
            "mean": float(present.mean()) if present.size else None,
            "std": float(present.std()) if present.size else None,
            "missing_rate": float(values.isna().mean()),
            "bin_edges": [float(e) for e in edges],
            "bin_shares": [float(c) / max(present.size, 1) for c in counts],
        }
    for col in CATEGORICAL_FEATURES:
        shares = train[col].astype(str).value_counts(normalize=True)
        stats["features"][col] = {
            "kind": "categorical",
            "missing_rate": float(train[col].isna().mean()),
            "shares": {str(k): float(v) for k, v in shares.items()},
        }
    labels = train[LABEL].astype(str).value_counts(normalize=True)
    stats["labels"] = {d: float(labels.get(d, 0.0)) for d in DEPARTMENTS}
    return stats
