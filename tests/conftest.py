"""Suite-wide rules.

A test that needs a tool this machine lacks skips with a reason locally; under CI (CI=true) a skip
is a failure, so a green CI always means every test really ran.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import S3Server, minio_available
from tests.support import IN_CI, require


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tier markers follow the folder, so a test cannot land in the wrong tier by forgetting a decorator.
    for item in items:
        parts = item.path.parts
        for tier in ("unit", "integration", "k8s", "image"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3 server (MinIO from `make k8s-tools`) for the whole session; stopped and wiped after.

    Tests isolate themselves with `s3.new_bucket()` and connect with `s3.storage_options` (s3fs) or
    `s3.env()` (subprocesses).
    """
    require(minio_available(), "minio is not built (make k8s-tools)")
    with S3Server() as server:
        yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Safety net: any skip at all (also pytest.skip in third-party fixtures) fails a CI run.
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == 0:
        print(f"\nCI=true: {skipped} test(s) skipped; skips are failures in CI.")
        session.exitstatus = 1
