"""The loan project's own estimator: numerics only, with pairwise interactions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from shipyard.training import ModelInputs


def build(inputs: ModelInputs, hp: Mapping[str, Any]) -> Pipeline:
    assert not inputs.text, "the loan project has no text"
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("interactions", PolynomialFeatures(degree=int(hp["degree"]), include_bias=False)),
        ]
    )
    features = ColumnTransformer([("numeric", numeric, list(inputs.numeric))])
    classifier = SGDClassifier(
        loss="log_loss", alpha=float(hp["alpha"]), average=True, random_state=int(hp["seed"])
    )
    return Pipeline([("features", features), ("classifier", classifier)])
