"""Ticket routing's estimator: TF-IDF over the ticket text, one-hot categories, scaled numerics,
and an averaged-SGD logistic classifier (its averaged weights give a smooth, measurable loss curve)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.training import ModelInputs


def build(inputs: ModelInputs, hp: Mapping[str, Any]) -> Pipeline:
    transformers: list[tuple[str, Any, Any]] = [
        (
            f"text_{col}",
            TfidfVectorizer(
                ngram_range=(1, int(hp["ngram_max"])), min_df=int(hp["min_df"]), sublinear_tf=True
            ),
            col,
        )
        for col in inputs.text
    ]
    if inputs.categorical:
        transformers.append(("categorical", OneHotEncoder(handle_unknown="ignore"), list(inputs.categorical)))
    if inputs.numeric:
        numeric = Pipeline(
            [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric, list(inputs.numeric)))
    classifier = SGDClassifier(
        loss="log_loss", alpha=float(hp["alpha"]), average=True, random_state=int(hp["seed"])
    )
    return Pipeline([("features", ColumnTransformer(transformers)), ("classifier", classifier)])
