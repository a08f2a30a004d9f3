"""Which looked-up feature values the model cannot take (issue 8, item 5): they become missing values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from serving.features import invalid_reason

NUMBER = {"type": "number", "min": 0.0, "max": 10.0, "median": 3.0}
CATEGORY = {"type": "string", "categories": ["north", "south"]}


@pytest.mark.parametrize(
    ("value", "spec", "reason"),
    [
        (None, NUMBER, None),
        (math.nan, NUMBER, None),  # already missing: imputed and counted, not flagged
        (math.inf, NUMBER, "non_finite"),
        (-math.inf, NUMBER, "non_finite"),
        ("12", NUMBER, "type"),
        (b"1", NUMBER, "type"),
        (1e300, NUMBER, None),  # finite, far outside the training range: served, counted as out of range
        (-5, NUMBER, None),
        (True, NUMBER, None),
        ("north", CATEGORY, None),
        ("mars", CATEGORY, "unknown_category"),
        (5, CATEGORY, "unknown_category"),
        (None, CATEGORY, None),
    ],
)
def test_invalid_reason(value: Any, spec: dict[str, Any], reason: str | None) -> None:
    assert invalid_reason(value, spec) == reason


def test_numpy_scalars_are_numbers() -> None:
    import numpy as np

    assert invalid_reason(np.float64("inf"), NUMBER) == "non_finite"
    assert invalid_reason(np.int64(4), NUMBER) is None
