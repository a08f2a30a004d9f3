"""The `shipyard` command line: the one composition root, one module per noun (like Feast's CLI).

Only here do the library (`shipyard`), the pipelines, the model server and a project meet; every
command reads the environment's settings (`--env`, else $SHIPYARD_ENV, else local) and reports an
expected failure as one line naming what is wrong, with exit code 2.
"""

from shipyard.cli import (
    data,
    demo,
    features,
    models,
    monitor,
    pipeline,
    release,
    run,
    serve,
    settings,
    triage,
)
from shipyard.cli.root import main

__all__ = [
    "data",
    "demo",
    "features",
    "main",
    "models",
    "monitor",
    "pipeline",
    "release",
    "run",
    "serve",
    "settings",
    "triage",
]
