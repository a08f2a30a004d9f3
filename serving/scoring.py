"""Scoring a batch of model inputs without a pandas DataFrame: the fitted pipeline, compiled once.

One `predict_proba` call on a one-row DataFrame cost 5-13 ms on the benchmark machine while the
same pipeline scored 64 rows in little more: almost all of it is scikit-learn's per-call input checks
on a DataFrame (feature names through narwhals, dtype checks per column and per transformer), not
arithmetic. The server knows its columns and dtypes already (the version's contract), so at load
time `compile_scorer` takes the fitted pipeline apart and scores column arrays directly:

* the `features` ColumnTransformer's parts are run one by one on the columns they read, and stacked
  exactly as `ColumnTransformer._hstack` does (sparse `hstack(...).tocsr()` or dense `hstack`);
* parts whose fitted state is a few arrays run as the same numpy operations scikit-learn performs
  (`OneHotEncoder`, `SimpleImputer` with its missing indicator, `StandardScaler`, and `Pipeline`s of
  those); text vectorizers get the raw strings (they take any iterable, no DataFrame checks); any
  other part gets a DataFrame of just its columns, so it sees what it saw in training;
* the classifier's own `predict_proba` runs on the stacked matrix.

The result is the same floating-point operations in the same order, so the probabilities are the
pipeline's own (tests/integration/test_serving_consistency.py compares them with the offline
prediction for every test-split row). A pipeline of another shape (no ColumnTransformer, a
`set_output(transform="pandas")`, options these kernels do not reproduce) is scored through a
DataFrame with `predict_proba`, as before; and at load the compiled path is checked against that
one on probe rows, falling back (with a log line) if they ever differ by more than 1e-12.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.training import MISSING_CATEGORY, ModelInputs

log = logging.getLogger("shipyard.serving")

Columns = Mapping[str, np.ndarray]
Kernel = Callable[[np.ndarray], Any]  # a 2-D (or, for text, 1-D) array -> its transformed block
PROBE_TOLERANCE = 1e-12


# -- model inputs as arrays ---------------------------------------------------------------------------
def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, numbers.Real):
        return float(value)
    # What `pd.to_numeric(errors="coerce")` in shipyard.training.prepare makes of anything else.
    return float(pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").iloc[0])


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def input_arrays(inputs: ModelInputs, columns: Mapping[str, Sequence[Any]], n: int) -> dict[str, np.ndarray]:
    """The model's input columns as arrays, missing values as `shipyard.training.prepare` makes them
    (text: "", categories: the 'missing' category, numbers: float64 NaN), without a DataFrame."""
    out: dict[str, np.ndarray] = {}
    for name in inputs.columns:
        values = columns.get(name)
        if values is None:
            values = [None] * n
        if name in inputs.numeric:
            out[name] = np.array([_number(v) for v in values], dtype=np.float64)
            continue
        fill = "" if name in inputs.text else MISSING_CATEGORY
        array = np.empty(n, dtype=object)
        array[:] = [fill if _is_missing(v) else v for v in values]
        out[name] = array
    return out


def input_frame(inputs: ModelInputs, arrays: Columns) -> pd.DataFrame:
    """The same inputs as the DataFrame `prepare` returns (for the fallback path and for tests)."""
    return pd.DataFrame({name: arrays[name] for name in inputs.columns}, columns=list(inputs.columns))


# -- scorers --------------------------------------------------------------------------------------------
class Scorer(Protocol):
    """Probabilities, one row per input row, one column per entry of `classes`."""

    classes: list[str]
    compiled: bool

    def predict_proba(self, arrays: Columns) -> np.ndarray: ...


class FrameScorer:
    """The pipeline's own `predict_proba` on a DataFrame: any pipeline, with per-call overhead."""

    compiled = False

    def __init__(self, pipeline: Any, inputs: ModelInputs) -> None:
        self.pipeline = pipeline
        self.inputs = inputs
        self.classes = [str(c) for c in pipeline.classes_]

    def predict_proba(self, arrays: Columns) -> np.ndarray:
        proba: np.ndarray = self.pipeline.predict_proba(input_frame(self.inputs, arrays))
        return proba


class CompiledScorer:
    """The `features` ColumnTransformer run part by part on arrays, then the classifier."""

    compiled = True

    def __init__(
        self,
        parts: list[tuple[list[str], bool, Kernel]],
        sparse_output: bool,
        classifier: Any,
        classes: list[str],
    ) -> None:
        self.parts = parts  # (columns, one 1-D column?, kernel)
        self.sparse_output = sparse_output
        self.classifier = classifier
        self.classes = classes

    def predict_proba(self, arrays: Columns) -> np.ndarray:
        blocks = []
        for names, one_d, kernel in self.parts:
            if one_d:
                blocks.append(kernel(arrays[names[0]]))
            elif len(names) == 1:
                blocks.append(kernel(arrays[names[0]].reshape(-1, 1)))
            else:
                blocks.append(kernel(np.column_stack([arrays[name] for name in names])))
        if self.sparse_output:
            # ColumnTransformer._hstack: every block through check_array (dense -> float64 array).
            stacked: Any = sp.hstack(
                [b if sp.issparse(b) else np.asarray(b, dtype=np.float64) for b in blocks]
            ).tocsr()
        else:
            stacked = np.hstack([b.toarray() if sp.issparse(b) else b for b in blocks])
        proba: np.ndarray = self.classifier.predict_proba(stacked)
        return proba


# -- kernels: numpy versions of fitted transformers (the same operations scikit-learn performs) ---------
def _one_hot(encoder: OneHotEncoder) -> Kernel | None:
    if (
        encoder.drop_idx_ is not None
        or getattr(encoder, "_infrequent_enabled", False)
        or encoder.handle_unknown not in ("ignore", "infrequent_if_exist")
        or not encoder.sparse_output
    ):
        return None
    lookups = [{value: i for i, value in enumerate(cats.tolist())} for cats in encoder.categories_]
    if any(len(lookup) != len(cats) for lookup, cats in zip(lookups, encoder.categories_, strict=True)):
        return None  # duplicate-looking categories (1 and 1.0): let scikit-learn decide
    offsets = np.cumsum([0, *(len(c) for c in encoder.categories_)])
    width, dtype = int(offsets[-1]), encoder.dtype

    def transform(x: np.ndarray) -> sp.csr_matrix:
        indices: list[int] = []
        indptr = [0]
        for row in x:
            for j, value in enumerate(row):
                i = lookups[j].get(value)
                if i is not None:  # an unknown category is all zeros (handle_unknown="ignore")
                    indices.append(int(offsets[j]) + i)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=dtype)
        return sp.csr_matrix(
            (data, np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int32)),
            shape=(len(x), width),
        )

    return transform


def _imputer(imputer: SimpleImputer) -> Kernel | None:
    stats = np.asarray(imputer.statistics_)
    missing = imputer.missing_values
    if (
        stats.dtype.kind != "f"
        or np.isnan(stats).any()  # columns dropped as empty in fit
        or not (isinstance(missing, float) and math.isnan(missing))
    ):
        return None
    indicator = getattr(imputer, "indicator_", None) if imputer.add_indicator else None
    if indicator is not None and (indicator.sparse is True or indicator.features != "missing-only"):
        return None
    features = None if indicator is None else np.asarray(indicator.features_)

    def transform(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        mask = np.isnan(x)
        imputed = np.where(mask, stats, x)
        if features is None:
            return imputed
        return np.hstack((imputed, mask[:, features].astype(np.float64)))

    return transform


def _scaler(scaler: StandardScaler) -> Kernel:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64)  # a copy, as StandardScaler(copy=True) makes
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return transform


def _kernel(transformer: Any) -> Kernel | None:
    """A numpy kernel for a fitted transformer, or None when only scikit-learn itself will do."""
    if isinstance(transformer, Pipeline):
        steps = [_kernel(step) for _, step in transformer.steps if step not in (None, "passthrough")]
        if not steps or any(s is None for s in steps):
            return None
        chain = [s for s in steps if s is not None]

        def transform(x: np.ndarray) -> Any:
            for step in chain:
                x = step(x)
            return x

        return transform
    if isinstance(transformer, OneHotEncoder):
        return _one_hot(transformer)
    if isinstance(transformer, SimpleImputer) and type(transformer) is SimpleImputer:
        return _imputer(transformer)
    if isinstance(transformer, StandardScaler) and type(transformer) is StandardScaler:
        return _scaler(transformer)
    return None


def _part(transformer: Any, names: list[str], one_d: bool) -> Kernel:
    if transformer == "passthrough":
        return lambda x: np.asarray(x, dtype=np.float64)
    if one_d and isinstance(transformer, CountVectorizer | HashingVectorizer):
        return transformer.transform  # type: ignore[no-any-return]  # takes any iterable of strings
    kernel = _kernel(transformer)
    if kernel is not None:
        return kernel
    # Anything else sees what it saw in training: a Series for one named column, else a DataFrame.
    if one_d:
        return lambda x: transformer.transform(pd.Series(x, name=names[0]))
    return lambda x: transformer.transform(pd.DataFrame(x, columns=names))


def _compile(pipeline: Any) -> CompiledScorer | None:
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    features, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(features, ColumnTransformer) or not hasattr(classifier, "predict_proba"):
        return None
    if getattr(features, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        return None
    parts: list[tuple[list[str], bool, Kernel]] = []
    for _, transformer, columns in features.transformers_:
        if transformer == "drop":
            continue
        if isinstance(columns, str):
            names, one_d = [columns], True
        elif isinstance(columns, list | tuple | np.ndarray) and all(isinstance(c, str) for c in columns):
            names, one_d = [str(c) for c in columns], False
        else:
            return None  # positional or callable column selection: leave it to scikit-learn
        if not names:
            continue
        parts.append((names, one_d, _part(transformer, names, one_d)))
    return CompiledScorer(
        parts, bool(features.sparse_output_), classifier, [str(c) for c in pipeline.classes_]
    )


def probe_arrays(inputs: ModelInputs, features: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Three rows that exercise every input: all missing, typical values, unknown categories."""
    columns: dict[str, list[Any]] = {}
    for name in inputs.columns:
        spec = features.get(name, {})
        if name in inputs.text:
            columns[name] = [None, "probe text 42: cannot log in?", "x"]
        elif name in inputs.categorical:
            cats = list(spec.get("categories") or ["a"])
            columns[name] = [None, cats[0], "__unknown__"]
        else:
            low = spec.get("min")
            columns[name] = [None, float(low) if low is not None else 0.0, 1.0]
    return input_arrays(inputs, columns, 3)


def compile_scorer(
    pipeline: Any, inputs: ModelInputs, features: Mapping[str, Mapping[str, Any]] | None = None
) -> Scorer:
    """The compiled scorer when the pipeline's shape allows it and it agrees with the pipeline's own
    `predict_proba` on probe rows; else the DataFrame path."""
    frame = FrameScorer(pipeline, inputs)
    try:
        compiled = _compile(pipeline)
    except (AttributeError, TypeError, ValueError) as exc:
        log.warning("scoring through DataFrames: the pipeline could not be compiled (%s)", exc)
        return frame
    if compiled is None:
        log.info("scoring through DataFrames: the pipeline's shape is not one the compiled path knows")
        return frame
    probe = probe_arrays(inputs, features or {})
    try:
        expected, got = frame.predict_proba(probe), compiled.predict_proba(probe)
    except Exception as exc:  # the probe itself does not score: the frame path will say why per request
        log.warning("scoring through DataFrames: the probe rows did not score (%s)", exc)
        return frame
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=0, atol=PROBE_TOLERANCE):
        log.warning(
            "scoring through DataFrames: the compiled path disagreed with predict_proba on probe rows"
        )
        return frame
    return compiled
