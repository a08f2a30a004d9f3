"""The platform/project boundary, checked on the source: no use-case word inside platform code.

import-linter (`make lint`) enforces the import arrows; this enforces the vocabulary, which imports
cannot see: a platform that says "customer" in a metric name or a default has a use case baked in.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ("shipyard", "serving", "components", "pipelines")
# Words of the reference project (ticket routing at a bank) and of the test project (loan default).
USE_CASE = re.compile(
    r"ticket|department|customer|routing|bank|accounting|inventory|payslip|loan|applicant|bureau", re.I
)
GENERATED = {Path("pipelines/training.yaml")}  # compiled: carries the dev environment's arguments


def test_platform_code_names_no_use_case() -> None:
    hits = []
    for package in PLATFORM:
        for path in sorted((ROOT / package).rglob("*")):
            rel = path.relative_to(ROOT)
            if path.suffix not in {".py", ".yaml", ".json", ".md"} or rel in GENERATED:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if USE_CASE.search(line):
                    hits.append(f"{rel}:{n}: {line.strip()}")
    assert hits == [], "use-case names in platform code:\n" + "\n".join(hits)
