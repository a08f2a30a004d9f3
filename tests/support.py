"""Helpers shared by the test tiers."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite tool or service is missing.

    Locally a missing tool should not block unrelated work; in CI a skipped test would make a
    green run lie about what was verified.
    """
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite in CI: {reason}", pytrace=False)
    pytest.skip(reason)
