"""Builders of the small inputs tests hand the library: canonical tables (lpt_core.data.schemas),
RL examples and a recipe on the tiny models. One place each, so a schema or config change is
followed in one file; each test module keeps only its own data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from lpt_core.config import ModelsConfig, Recipe
from lpt_core.data import schemas
from lpt_core.training.examples import RLExample


def interactions_table(
    rows: Sequence[tuple[str, str, int]],
    ratings: Sequence[float | None] | None = None,
    reviews: Sequence[str | None] | None = None,
) -> pl.DataFrame:
    """(user, item, timestamp) rows as the canonical interactions table. By default a row's rating
    is its input position, so a test sees which rows a step kept and in what order."""
    return pl.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "rating": list(ratings) if ratings is not None else [float(n) for n in range(len(rows))],
            "timestamp": [t for _, _, t in rows],
            "review": list(reviews) if reviews is not None else [None] * len(rows),
        },
        schema=schemas.INTERACTIONS,
    )


def items_table(ids: Sequence[str], **columns: Sequence) -> pl.DataFrame:
    """The canonical items table of `ids`: titled "Title <id>", no categories, every other value
    null, except the `columns` given (one value per id)."""
    defaults: dict[str, list] = {
        "title": [f"Title {i}" for i in ids],
        "categories": [[] for _ in ids],
    }
    return pl.DataFrame(
        {
            "item_id": list(ids),
            **{name: columns.get(name, defaults.get(name, [None] * len(ids))) for name in schemas.ITEMS if name != "item_id"},
        },
        schema=schemas.ITEMS,
    )


def example_row(user: str, split: str, history: Sequence[str], target: str, **columns) -> dict:
    """One row of the examples table: window 0, every history item rated 4.0 without a review,
    except the `columns` given."""
    return {
        "user_id": user,
        "split": split,
        "window": 0,
        "history_item_ids": list(history),
        "history_ratings": [4.0] * len(history),
        "history_reviews": [None] * len(history),
        "target_item_id": target,
        **columns,
    }


def examples_table(*rows: dict) -> pl.DataFrame:
    """`example_row` rows as the canonical examples table."""
    return pl.DataFrame(list(rows), schema=schemas.EXAMPLES)


def chat_rl_examples(tokenizer, rows: Iterable[tuple[str, str, Sequence[str], Sequence[str]]]) -> list[RLExample]:
    """RL examples from (user turn, target, history, later targets) rows: the prompt is the user
    turn in the tokenizer's chat template, ready for the reply."""
    return [
        RLExample(
            tokenizer.apply_chat_template([{"role": "user", "content": turn}], tokenize=False, add_generation_prompt=True),
            target, list(history), tuple(later),
        )
        for turn, target, history, later in rows
    ]


def tiny_recipe(lm: Path, encoder: Path | None = None, **sections) -> Recipe:
    """A recipe on the tiny models, in float32 on the CPU; `sections` (generation=..., training=...)
    replace the recipe's defaults."""
    models = {"generator": str(lm), "dtype": "float32", "device": "cpu"}
    if encoder is not None:
        models["encoder"] = str(encoder)
    return Recipe(name="tiny", models=ModelsConfig(**models), **sections)
