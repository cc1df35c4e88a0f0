"""Interaction tables turned into what the history-reading recommenders consume: catalogue positions.

Positions index the evaluation catalogue in its order (item_catalog / ItemIndex.item_ids), so a
model's score columns line up with the catalogue every other method ranks. Train users contribute
their FULL time-ordered sequences (training data); val/test users only ever contribute the N-item
history of their examples, never their later interactions, because the split holds out whole users.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

ROW_INDEX = "_row"


def catalogue_positions(item_ids: Sequence[str]) -> dict[str, int]:
    """item id -> position in the catalogue; repeated ids are an error."""
    positions = {item_id: pos for pos, item_id in enumerate(item_ids)}
    if len(positions) != len(item_ids):
        raise ValueError(f"item_ids must be unique: {len(item_ids) - len(positions)} repeated")
    return positions


def train_sequences(
    histories: pl.DataFrame, user_ids: Iterable[str], item_ids: Sequence[str]
) -> list[list[int]]:
    """Each listed user's catalogue interactions in time order (ties keep input order, as the
    split does), as catalogue positions; items outside the catalogue are left out."""
    position = catalogue_positions(item_ids)
    users = pl.Series("user_id", list(user_ids), dtype=pl.String)
    ordered = (
        histories.with_row_index(ROW_INDEX)
        .filter(pl.col("user_id").is_in(users.implode()) & pl.col("item_id").is_in(list(position)))
        .sort(["user_id", "timestamp", ROW_INDEX])
        .group_by("user_id", maintain_order=True)
        .agg("item_id")
    )
    return [[position[i] for i in items] for items in ordered["item_id"].to_list()]


def example_positions(
    examples: pl.DataFrame, item_ids: Sequence[str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """(history positions per row, target position per row) of EXAMPLES rows; a KeyError names
    the first item id that is not in the catalogue."""
    position = catalogue_positions(item_ids)

    def lookup(item_id: str, row: int, field: str) -> int:
        try:
            return position[item_id]
        except KeyError:
            raise KeyError(f"row {row}, {field}: item {item_id!r} is not in the catalogue") from None

    histories = [
        np.array([lookup(i, row, "history_item_ids") for i in history], dtype=np.int64)
        for row, history in enumerate(examples["history_item_ids"].to_list())
    ]
    targets = np.array(
        [lookup(i, row, "target_item_id") for row, i in enumerate(examples["target_item_id"].to_list())],
        dtype=np.int64,
    )
    return histories, targets


@dataclass(frozen=True)
class BaselineData:
    """What the history baselines are fitted and selected on, over one catalogue."""

    item_ids: list[str]
    train_sequences: list[list[int]]  # train users' full sequences
    val_histories: list[np.ndarray]  # validation examples' N-item histories
    val_targets: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def baseline_data(
    cleaned_histories: pl.DataFrame, user_examples: pl.DataFrame, item_ids: Sequence[str]
) -> BaselineData:
    """Train users' full sequences and the validation examples, as catalogue positions."""
    train_users = user_examples.filter(pl.col("split") == "train")["user_id"].unique(maintain_order=True)
    val_examples = user_examples.filter(pl.col("split") == "val")
    if train_users.is_empty() or val_examples.is_empty():
        raise ValueError(
            f"user_examples needs train and val rows, got {train_users.len()} train users and "
            f"{val_examples.height} val rows"
        )
    val_histories, val_targets = example_positions(val_examples, item_ids)
    return BaselineData(
        list(item_ids), train_sequences(cleaned_histories, train_users, item_ids), val_histories, val_targets
    )
