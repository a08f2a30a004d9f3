"""Feast imported for reading skips typeguard's import-time instrumentation, and only Feast."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import typeguard
original = typeguard.typechecked
from shipyard.featurestore import _import_feast_for_reading
_import_feast_for_reading()
import feast.data_source as ds
assert typeguard.typechecked is original, "decorator not restored"
# typeguard rewrites an instrumented method's code to call into `typeguard`; a plain one does not.
print(ds.KafkaSource.__init__.__code__.co_filename.endswith("data_source.py"))
print("instrumented" if "typeguard" in ds.KafkaSource.__init__.__code__.co_names else "plain")
"""


def test_reading_import_is_plain_and_restores_the_decorator() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "plain"], out.stderr


def test_regular_import_keeps_feasts_runtime_checks() -> None:
    probe = "import feast.data_source as ds\nprint('typeguard' in ds.KafkaSource.__init__.__code__.co_names)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr
