"""Copy the application's settings into the chart: the schema, and each environment's settings file.

1. values.schema.json `settings` is exactly the schema the application validates the mounted file
   with (shipyard.settings.settings_schema()), so a typo in an environment's settings fails
   `helm install`, not a pod.
2. ci/<env>-values.yaml `settings:` is environments/<env>.yaml (comments included), so the chart
   installs each environment with the settings the rest of Shipyard uses for it.

Run after a change to shipyard/settings.py or environments/*.yaml (tests/k8s/test_chart.py fails
until the copies match):

    .venv/bin/python charts/shipyard/hack/sync_settings.py
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
VALUES_SCHEMA = CHART / "values.schema.json"
ENVIRONMENTS = ("dev", "staging", "prod")
POINTER = "#/properties/settings/$defs/"


def settings_subschema() -> dict[str, Any]:
    """The settings schema, with its `$defs` references rewritten to where it sits in the chart's."""
    from shipyard.settings import settings_schema

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (value.replace("#/$defs/", POINTER) if key == "$ref" else rewrite(value))
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    schema: dict[str, Any] = rewrite(settings_schema())
    schema["description"] = (
        "The environment's settings file (shipyard.settings.Settings), copied from the application's "
        "schema by hack/sync_settings.py. " + schema.get("description", "")
    ).strip()
    return schema


def settings_block(env: str) -> str:
    """environments/<env>.yaml as the `settings:` block of a values file (its header comment dropped)."""
    lines = (REPO / "environments" / f"{env}.yaml").read_text().splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "settings:\n" + textwrap.indent("\n".join(lines).rstrip(), "  ") + "\n"


def with_settings(values_text: str, env: str) -> str:
    """The values file with its top-level `settings:` block replaced by the environment's file."""
    match = re.search(r"^settings:\n(?:(?:  .*)?\n)*", values_text, flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"ci/{env}-values.yaml has no top-level `settings:` block")
    return values_text[: match.start()] + settings_block(env) + values_text[match.end() :]


def main() -> None:
    values_schema = json.loads(VALUES_SCHEMA.read_text())
    values_schema["properties"]["settings"] = settings_subschema()
    VALUES_SCHEMA.write_text(json.dumps(values_schema, indent=2) + "\n")
    print(f"updated {VALUES_SCHEMA.relative_to(REPO)}")
    for env in ENVIRONMENTS:
        path = CHART / "ci" / f"{env}-values.yaml"
        path.write_text(with_settings(path.read_text(), env))
        print(f"updated {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
