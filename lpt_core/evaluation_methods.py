"""The rows of the evaluation report that need no training (evaluation.methods), named in one place.

Each name is a ranking method registered under it in lpt_core.baselines (`@register("name")`),
which refuses a name not listed here. The names live apart from the methods because the config
checks a recipe's evaluation.methods against them and loads where torch and faiss, which the
methods need, are not installed (the GPU benchmark machine).
"""

from __future__ import annotations

# The rows that fit an item-side head on train examples (evaluation.head) before they rank.
HEAD_METHODS = ("history_text_head", "profile_head")

EVALUATION_METHODS = (
    "random", "popularity", "last_item_text", "history_text", "profile", "profile_mean", "sasrec", "item_knn",
    *HEAD_METHODS,
)
