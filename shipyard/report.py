"""Human-readable evaluation reports (Markdown), rendered from the JSON form of an evaluation.

Separate from the scoring code so the register step, the CLI and the model card can render a report
without importing scikit-learn.
"""

from __future__ import annotations

from typing import Any


def evaluation_markdown(ev: dict[str, Any]) -> str:
    """A report for the KFP UI and the model card, from the JSON form of an Evaluation."""
    cand = ev["candidate"]
    lines = [
        f"# Evaluation: {'PASSED' if ev['passed'] else 'REJECTED'}",
        "",
        f"Test holdout: {ev['test_rows']} rows.",
        "",
        "| model | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| candidate | {cand['accuracy']:.3f} | {cand['macro_f1']:.3f} |",
    ]
    for name, base in ev["baselines"].items():
        lines.append(f"| baseline: {name} | {base['accuracy']:.3f} | {base['macro_f1']:.3f} |")
    if ev["champion"]:
        champ = ev["champion"]["scores"]
        lines.append(
            f"| champion {ev['champion']['version']} | {champ['accuracy']:.3f} | {champ['macro_f1']:.3f} |"
        )
    lines += ["", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, m in cand["per_label"].items():
        lines.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    lines += ["", "| gate | result | value | threshold | detail |", "|---|---|---|---|---|"]
    for g in ev["gates"]:
        value = "-" if g["value"] is None else f"{g['value']:.3f}"
        threshold = "-" if g["threshold"] is None else f"{g['threshold']:.3f}"
        lines.append(
            f"| {g['name']} | {'pass' if g['passed'] else 'FAIL'} | {value} | {threshold} | {g['detail']} |"
        )
    return "\n".join(lines) + "\n"
