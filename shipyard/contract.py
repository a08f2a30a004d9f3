"""The input contract and reference statistics, derived from the project spec and the training data.

Both are stored with the model version: the server validates requests against the contract its
model was trained with (not against today's code), assembles model inputs in the order recorded
here, and monitoring compares live traffic to the reference statistics of the exact training set.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from shipyard.artifacts import CONTRACT_FILE, REFERENCE_FILE
from shipyard.project import ProjectSpec
from shipyard.training import ModelInputs

__all__ = [
    "CONTRACT_FILE",
    "CONTRACT_VERSION",
    "QUANTILE_POINTS",
    "REFERENCE_FILE",
    "REFERENCE_VERSION",
    "input_contract",
    "reference_stats",
    "tokens",
]

CONTRACT_VERSION = 2
REFERENCE_VERSION = 2
QUANTILE_POINTS = 201  # probabilities 0, 0.005, ..., 1
_QUANTILE_PROBS = np.linspace(0, 1, QUANTILE_POINTS)
_BINS = 10
_WORD = re.compile(r"[^\W\d_]+")
_VOCABULARY_SIZE = 5_000
_MIN_DOCS = 3
_DEFAULT_TEXT_LIMIT = 5_000


def _request(spec: ProjectSpec, train: pd.DataFrame) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    for f in spec.request:
        entry: dict[str, Any] = {"name": f.name, "type": f.type, "required": f.required}
        if f.type in ("integer", "number"):
            entry["min"], entry["max"] = f.min, f.max
        if f.type in ("string", "text"):
            limit = f.max_length or _DEFAULT_TEXT_LIMIT
            if f.name in train and f.max_length is None:
                # Four times the longest text seen in training, capped: room for real variety, not
                # for a 5 MB paste that would only be truncated by the vectorizer anyway.
                longest = int(train[f.name].astype(str).str.len().max())
                limit = int(min(limit, max(longest * 4, 200)))
            entry["min_length"], entry["max_length"] = 1, limit
        if f.type == "string" and f.name in train and f.name != spec.event_id:
            # An event id passed through for joining labels later is unique per request: it has no
            # categories, only its bounds.
            entry["categories"] = sorted(str(v) for v in train[f.name].dropna().unique())
        fields.append(entry)
    return fields


def input_contract(train: pd.DataFrame, spec: ProjectSpec, inputs: ModelInputs) -> dict[str, Any]:
    """What a caller must send, which columns the model reads, and what looked-up features looked like."""
    features: dict[str, Any] = {}
    for col in inputs.categorical:
        features[col] = {
            "type": "string",
            "categories": sorted(str(v) for v in train[col].dropna().unique()),
            "nullable": True,
        }
    for col in inputs.numeric:
        values = pd.to_numeric(train[col], errors="coerce")
        present = values.dropna()
        features[col] = {
            "type": "integer" if pd.api.types.is_integer_dtype(train[col]) else "number",
            "min": float(present.min()) if len(present) else None,
            "max": float(present.max()) if len(present) else None,
            "nullable": bool(values.isna().any()),
            # What serving substitutes for a missing or non-finite looked-up value: the model's own
            # imputer does the same at training time, so this is only recorded for monitoring.
            "median": float(present.median()) if len(present) else None,
        }
    return {
        "version": CONTRACT_VERSION,
        "model_name": spec.name,
        "entity_key": spec.entity_key,
        "label": spec.label,
        "labels": list(spec.classes),
        "request": _request(spec, train),
        "max_batch": spec.max_batch,
        "inputs": inputs.to_json(),
        "on_demand": dict(spec.on_demand),
        "features": features,
    }


def _numeric_stats(values: pd.Series) -> dict[str, Any]:
    present = pd.to_numeric(values, errors="coerce").astype("float64").dropna().to_numpy()
    edges = np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1))) if present.size else np.array([])
    counts, _ = np.histogram(present, bins=edges) if edges.size > 1 else (np.array([present.size]), None)
    return {
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "bin_edges": [float(e) for e in edges],
        "bin_shares": [float(c) / max(present.size, 1) for c in counts],
        # The reference distribution itself, at QUANTILE_POINTS evenly spaced probabilities: what the
        # monitoring's Kolmogorov-Smirnov test compares served values with (its error <= 1/200).
        "quantiles": [float(q) for q in np.quantile(present, _QUANTILE_PROBS)] if present.size else [],
    }


def tokens(text: str) -> list[str]:
    """Lower-cased alphabetic words: what the vocabulary and the out-of-vocabulary rate count."""
    return _WORD.findall(text.lower())


def _vocabulary(texts: pd.Series) -> tuple[list[str], float]:
    """The most frequent words found in at least _MIN_DOCS texts (so no single text's identifiers or
    names are stored), and the share of training tokens outside that vocabulary."""
    docs: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for text in texts.dropna().astype(str):
        words = tokens(text)
        total.update(words)
        docs.update(set(words))
    kept = [w for w, n in docs.most_common() if n >= _MIN_DOCS][:_VOCABULARY_SIZE]
    vocab = set(kept)
    n_tokens = sum(total.values())
    oov = sum(n for w, n in total.items() if w not in vocab)
    return sorted(kept), (oov / n_tokens if n_tokens else 0.0)


def reference_stats(train: pd.DataFrame, spec: ProjectSpec, inputs: ModelInputs) -> dict[str, Any]:
    """Per-feature distributions (decile bins, quantiles, shares, missing rates) for drift detection.

    Version 2 added `quantiles` (numeric features), length bins/quantiles and a vocabulary (text);
    monitoring reads version 1 files too, with PSI only where quantiles are missing.
    """
    stats: dict[str, Any] = {
        "version": REFERENCE_VERSION,
        "rows": len(train),
        "quantile_points": QUANTILE_POINTS,
        "features": {},
    }
    for col in inputs.numeric:
        values = pd.to_numeric(train[col], errors="coerce").astype("float64")
        stats["features"][col] = {
            "kind": "numeric",
            "missing_rate": float(values.isna().mean()),
            **_numeric_stats(values),
        }
    for col in inputs.categorical:
        shares = train[col].astype(str).value_counts(normalize=True)
        stats["features"][col] = {
            "kind": "categorical",
            "missing_rate": float(train[col].isna().mean()),
            "shares": {str(k): float(v) for k, v in shares.items()},
        }
    for col in inputs.text:
        lengths = train[col].astype(str).str.len()
        length = _numeric_stats(lengths)
        vocabulary, oov_rate = _vocabulary(train[col])
        stats["features"][col] = {
            "kind": "text",
            "missing_rate": float(train[col].isna().mean()),
            "length_mean": float(lengths.mean()),
            "length_std": float(lengths.std()),
            "length_bin_edges": length["bin_edges"],
            "length_bin_shares": length["bin_shares"],
            "length_quantiles": length["quantiles"],
            "vocabulary": vocabulary,
            "oov_rate": oov_rate,
        }
    labels = train[spec.label].astype(str).value_counts(normalize=True)
    stats["labels"] = {label: float(labels.get(label, 0.0)) for label in spec.classes}
    return stats
