"""Model cards: what a version is, what it was trained on, how it scored and why it was accepted.

Written into the immutable version directory, so the evidence a promotion PR quotes is the evidence
that was recorded at training time.
"""

from __future__ import annotations

from typing import Any

from shipyard.artifacts import CARD_JSON, CARD_MD
from shipyard.report import evaluation_markdown

__all__ = ["CARD_JSON", "CARD_MD", "build_card", "card_markdown"]

INTENDED_USE = (
    "Routes a bank's customer support tickets to accounting, inventory, HR or IT from the ticket "
    "text and the customer's context. A routing aid: low-confidence tickets should go to a person."
)
LIMITATIONS = (
    "Trained on synthetic data in the reference set-up. Generic texts carry no department signal, "
    "so accuracy on them rests on customer context alone; label noise caps reachable accuracy."
)


def build_card(
    training: dict[str, Any],
    evaluation: dict[str, Any],
    feature_service: str,
    data_hash: str,
    rows: dict[str, int],
) -> dict[str, Any]:
    return {
        "name": "ticket-router",
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "feature_service": feature_service,
        "data": {"hash": data_hash, "rows": rows},
        "model": {
            "estimator": "TF-IDF + one-hot + scaled numerics -> SGD logistic",
            "params": training["params"],
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


def card_markdown(card: dict[str, Any], version: str, status: str) -> str:
    ev = card["evaluation"]
    lines = [
        f"# Model card: {card['name']} {version} ({status})",
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
        f"- params: `{card['model']['params']}`",
        f"- training: {card['training']['seconds']} s, {card['training']['epochs']} epochs, "
        f"val loss {card['training']['val_loss'][0]:.3f} -> {card['training']['val_loss'][-1]:.3f}",
        "",
    ]
    return "\n".join(lines) + evaluation_markdown(ev).replace("# Evaluation", "## Evaluation", 1)
