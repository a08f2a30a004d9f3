"""Model cards: what a version is, what it was trained on, how it scored and why it was accepted.

Written into the immutable version directory, so the evidence a promotion PR quotes is the evidence
that was recorded at training time.
"""

from __future__ import annotations

from typing import Any

from shipyard.artifacts import CARD_JSON, CARD_MD
from shipyard.project import ProjectSpec
from shipyard.report import evaluation_markdown

__all__ = ["CARD_JSON", "CARD_MD", "build_card", "card_markdown"]


def build_card(
    spec: ProjectSpec,
    training: dict[str, Any],
    evaluation: dict[str, Any],
    feature_service: str,
    data_hash: str,
    rows: dict[str, int],
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "title": spec.card.title,
        "intended_use": spec.card.intended_use,
        "limitations": spec.card.limitations,
        "feature_service": feature_service,
        "data": {"hash": data_hash, "rows": rows},
        "model": {
            "estimator": spec.card.estimator,
            "params": training["params"],
            "hyperparameters": training["hyperparameters"],
            "inputs": training["inputs"],
        },
        "code": {
            "git_commit": training["git_commit"],
            "libraries": training["libraries"],
            "python": training["python"],
        },
        "training": {
            "seconds": training["training_seconds"],
            "epochs": training["epochs"],
            "train_loss": training["train_loss"],
            "val_loss": training["val_loss"],
        },
        "evaluation": evaluation,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown. It names no version or status: the directory is content-addressed and
    immutable, while numbers and statuses live in the registry index (`shipyard models show`)."""
    ev = card["evaluation"]
    lines = [
        f"# Model card: {card['name']} — {card['title']}",
        "",
        f"**Intended use.** {card['intended_use']}",
        "",
        f"**Limitations.** {card['limitations']}",
        "",
        "## Provenance",
        "",
        f"- feature service: `{card['feature_service']}`",
        f"- data hash: `{card['data']['hash']}`; rows: {card['data']['rows']}",
        f"- git commit: `{card['code']['git_commit']}`; python {card['code']['python']}",
        f"- libraries: {', '.join(f'{k} {v}' for k, v in card['code']['libraries'].items())}",
        f"- estimator: {card['model']['estimator']}",
        f"- params: `{card['model']['params']}`; hyperparameters: `{card['model']['hyperparameters']}`",
        f"- training: {card['training']['seconds']} s, {card['training']['epochs']} epochs, "
        f"val loss {card['training']['val_loss'][0]:.3f} -> {card['training']['val_loss'][-1]:.3f}",
        "",
    ]
    return "\n".join(lines) + evaluation_markdown(ev).replace("# Evaluation", "## Evaluation", 1)
