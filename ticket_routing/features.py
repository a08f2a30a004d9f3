"""Request-time text features: the one implementation shared by training and serving.

Feast's on-demand feature view calls `text_features_frame` during historical retrieval (training)
and online retrieval (serving), so a ticket's features cannot differ between the two. Plain Python
over compiled regexes keeps a single-row call (the serving case) cheap: no DataFrame per request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import pandas as pd

from ticket_routing.schema import TEXT

# Words a human router looks for. Stems match inflections ("invoiced", "payments").
KEYWORDS: Final[dict[str, tuple[str, ...]]] = {
    "accounting": ("invoice", "payment", "charge", "refund", "fee", "statement", "billing", "overdue"),
    "inventory": ("order", "shipment", "deliver", "stock", "arrive", "replacement", "parcel", "courier"),
    "hr": ("leave", "payslip", "salary", "vacation", "pension", "contract", "holiday", "manager"),
    "it": ("login", "log in", "password", "app", "crash", "two-factor", "browser", "access"),
}
_PATTERNS: Final = {
    dept: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")", re.IGNORECASE)
    for dept, words in KEYWORDS.items()
}
_DIGIT: Final = re.compile(r"\d")

# Output columns, in order, with their Feast value types (declared by the feature repo).
TEXT_FEATURES: Final = (
    "text_length",
    "word_count",
    "digit_count",
    "question_marks",
    "kw_accounting",
    "kw_inventory",
    "kw_hr",
    "kw_it",
)


def _clean(text: object) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return str(text)


def text_features(texts: Iterable[object]) -> dict[str, list[int]]:
    """Compute the text features column-wise for a batch of ticket texts."""
    out: dict[str, list[int]] = {name: [] for name in TEXT_FEATURES}
    for raw in texts:
        text = _clean(raw)
        out["text_length"].append(len(text))
        out["word_count"].append(len(text.split()))
        out["digit_count"].append(len(_DIGIT.findall(text)))
        out["question_marks"].append(text.count("?"))
        for dept, pattern in _PATTERNS.items():
            out[f"kw_{dept}"].append(len(pattern.findall(text)))
    return out


def text_features_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """`text_features` for a frame with a `ticket_text` column (Feast's pandas-mode input)."""
    return pd.DataFrame(text_features(inputs[TEXT].tolist()), index=inputs.index).astype("int64")


def text_features_columns(columns: Mapping[str, Sequence[object]]) -> dict[str, list[int]]:
    """The on-demand view's in-process twin for the model server: request columns -> features."""
    return text_features(columns[TEXT])
