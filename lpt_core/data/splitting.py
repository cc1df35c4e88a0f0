"""The user-level split of docs/method.md ("Data and protocol"): whole users go to train, val or test.

Users are ordered by their earliest interaction; the first `train_frac` are train, the rest are
shuffled with the recipe's seed (the reference forgot one) and shared between val and test. The
catalogue is every item in train users' interactions; val/test interactions on other items are
dropped before their examples are built, so every val/test history and target is rankable.

Examples, per user, from their interactions in time order (ties keep input order):
- "first_n": window w starts at w * window_stride; history = the next N interactions, target = the
  first later interaction whose item is not in that history. One window is the paper's rule.
  Train users get windows_per_user windows, val/test users eval_windows_per_user (the same unless
  set).
- "leave_last_out": target = the last interaction whose item is not among the N before it,
  history = those N.
Windows without N history items or without a target are skipped; users left with none dropped.
Everything is vectorised in polars, so millions of interactions split in seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lpt_core.config import SplitConfig
from lpt_core.data import schemas

POSITION = "_position"
ROW_INDEX = "_row"
WINDOW_START = "_start"
HISTORY_COLUMNS = {"item_id": "history_item_ids", "rating": "history_ratings", "review": "history_reviews"}


@dataclass(frozen=True)
class Split:
    """The examples of all three splits and the catalogue they are ranked against."""

    examples: pl.DataFrame  # schemas.EXAMPLES
    catalog_item_ids: pl.Series  # items in train users' interactions, sorted
    # Users assigned to each split who had no valid example (too short or no new item).
    dropped_users: dict[str, int] = field(default_factory=dict)

    def stats(self) -> dict:
        """Users and examples per split, catalogue size, dropped users, history lengths, coverage."""
        per_split = {
            name: {
                "users": part["user_id"].n_unique(),
                "examples": part.height,
                "dropped_users": self.dropped_users.get(name, 0),
                "distinct_targets": part["target_item_id"].n_unique(),
            }
            for name in schemas.SPLITS
            for part in [self.examples.filter(pl.col("split") == name)]
        }
        history_lengths = Counter(self.examples["history_item_ids"].list.len().to_list())
        catalogue = self.catalog_item_ids.implode()
        in_catalogue = self.examples.select(
            pl.col("target_item_id").is_in(catalogue).mean().alias("targets"),
            pl.col("history_item_ids").list.eval(pl.element().is_in(catalogue).all()).list.first()
            .mean()
            .alias("histories"),
        ).row(0, named=True)
        return {
            "splits": per_split,
            "catalogue_items": len(self.catalog_item_ids),
            "history_length_histogram": dict(sorted(history_lengths.items())),
            "share_in_catalogue": in_catalogue,
        }


def split_users(interactions: pl.DataFrame, cfg: SplitConfig) -> Split:
    """Assign users to train/val/test and build their examples (see the module docstring)."""
    assignment = _assign_users(interactions, cfg)
    ordered = _in_time_order(interactions.join(assignment, on="user_id"))
    catalogue = ordered.filter(pl.col("split") == "train")["item_id"].unique().sort()
    usable = ordered.filter((pl.col("split") == "train") | pl.col("item_id").is_in(catalogue.implode()))
    usable = usable.with_columns(pl.int_range(pl.len()).over("user_id").alias(POSITION))
    if cfg.strategy == "first_n":
        windows = max(cfg.windows_per_user, cfg.evaluation_windows)
        examples = _first_n_examples(usable, cfg.history_len, windows, cfg.window_stride)
    elif cfg.strategy == "leave_last_out":
        examples = _leave_last_out_examples(usable, cfg.history_len)
    else:
        raise ValueError(f"unknown split strategy {cfg.strategy!r}")
    examples = (
        examples.join(assignment, on="user_id")
        .filter(_within_windows_of_split(cfg))
        .sort(["split_rank", "user_rank", "window"])
        .pipe(schemas.conform, schemas.EXAMPLES)
    )
    kept = examples.group_by("split").agg(pl.col("user_id").n_unique())
    assigned = assignment.group_by("split").len()
    dropped = {
        row["split"]: row["len"] - (row["user_id"] or 0)
        for row in assigned.join(kept, on="split", how="left").iter_rows(named=True)
    }
    return Split(examples=examples, catalog_item_ids=catalogue.rename("item_id"), dropped_users=dropped)


def drop_long_prompts(split: Split, prompt_token_counts: pl.Series, max_tokens: int) -> tuple[Split, int]:
    """Remove examples whose prompt exceeds `max_tokens` (counts aligned with the examples' rows).

    The catalogue is unchanged: it is defined by train interactions, not by surviving examples.
    """
    if len(prompt_token_counts) != split.examples.height:
        raise ValueError(
            f"prompt_token_counts has {len(prompt_token_counts)} values for {split.examples.height} examples"
        )
    keep = pl.Series(prompt_token_counts) <= max_tokens
    examples = split.examples.filter(keep)
    removed = split.examples.height - examples.height
    dropped = dict(split.dropped_users)
    for name in schemas.SPLITS:
        before = split.examples.filter(pl.col("split") == name)["user_id"].n_unique()
        after = examples.filter(pl.col("split") == name)["user_id"].n_unique()
        dropped[name] = dropped.get(name, 0) + before - after
    return Split(examples, split.catalog_item_ids, dropped), removed


def _assign_users(interactions: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """user_id, split, split_rank (0 train, 1 val, 2 test) and user_rank (order within the split)."""
    users = (
        interactions.group_by("user_id")
        .agg(pl.col("timestamp").min().alias("first_timestamp"))
        .sort(["first_timestamp", "user_id"])["user_id"]
    )
    n_train = int(len(users) * cfg.train_frac)
    rest = users[n_train:]
    shuffled = rest.gather(np.random.default_rng(cfg.seed).permutation(len(rest)))
    n_val = int(len(rest) * cfg.val_share)
    parts = {"train": users[:n_train], "val": shuffled[:n_val], "test": shuffled[n_val:]}
    return pl.concat(
        pl.DataFrame(
            {
                "user_id": part,
                "split": pl.Series([name] * len(part), dtype=pl.String),
                "split_rank": pl.Series([rank] * len(part), dtype=pl.Int8),
                "user_rank": pl.Series(range(len(part)), dtype=pl.Int64),
            }
        )
        for rank, (name, part) in enumerate(parts.items())
    )


def _within_windows_of_split(cfg: SplitConfig) -> pl.Expr:
    """Train rows up to windows_per_user, val/test rows up to eval_windows_per_user."""
    train = pl.col("split") == "train"
    return pl.col("window") < pl.when(train).then(cfg.windows_per_user).otherwise(cfg.evaluation_windows)


def _in_time_order(interactions: pl.DataFrame) -> pl.DataFrame:
    return (
        interactions.with_row_index(ROW_INDEX)
        .sort(["user_id", "timestamp", ROW_INDEX])
        .drop(ROW_INDEX)
    )


def _history_lists(history: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """One row per key with the history columns as lists in position order (nulls kept)."""
    return (
        history.sort([*keys, POSITION])
        .group_by(keys, maintain_order=True)
        .agg(*(pl.col(source).alias(target) for source, target in HISTORY_COLUMNS.items()))
    )


def _first_n_examples(usable: pl.DataFrame, n: int, windows: int, stride: int) -> pl.DataFrame:
    starts = pl.DataFrame(
        {
            "window": pl.Series(range(windows), dtype=pl.Int32),
            WINDOW_START: [w * stride for w in range(windows)],
        }
    )
    per_window = usable.join(starts, how="cross")
    keys = ["user_id", "window"]
    history = per_window.filter(
        (pl.col(POSITION) >= pl.col(WINDOW_START)) & (pl.col(POSITION) < pl.col(WINDOW_START) + n)
    )
    later = per_window.filter(pl.col(POSITION) >= pl.col(WINDOW_START) + n)
    targets = (
        later.join(history.select(*keys, "item_id"), on=[*keys, "item_id"], how="anti")
        .group_by(keys)
        .agg(pl.col("item_id").sort_by(POSITION).first().alias("target_item_id"))
    )
    lists = _history_lists(history, keys).filter(pl.col("history_item_ids").list.len() == n)
    return lists.join(targets, on=keys, how="inner")


def _leave_last_out_examples(usable: pl.DataFrame, n: int) -> pl.DataFrame:
    item = pl.col("item_id")
    repeats_recent = pl.any_horizontal(item == item.shift(lag).over("user_id") for lag in range(1, n + 1))
    targets = (
        usable.filter((pl.col(POSITION) >= n) & ~repeats_recent.fill_null(False))
        .group_by("user_id")
        .agg(pl.col(POSITION).max().alias("target_position"))
        .join(usable, left_on=["user_id", "target_position"], right_on=["user_id", POSITION])
        .select("user_id", "target_position", pl.col("item_id").alias("target_item_id"))
    )
    history = usable.join(targets, on="user_id").filter(
        (pl.col(POSITION) >= pl.col("target_position") - n) & (pl.col(POSITION) < pl.col("target_position"))
    )
    return (
        _history_lists(history, ["user_id"])
        .join(targets, on="user_id")
        .with_columns(pl.lit(0, dtype=pl.Int32).alias("window"))
    )


def train_item_counts(cleaned_histories: pl.DataFrame, user_examples: pl.DataFrame) -> dict[str, int]:
    """Popularity = interactions of train users only, so no evaluation user's data leaks into it."""
    train_users = user_examples.filter(pl.col("split") == "train")["user_id"].unique()
    counts = cleaned_histories.filter(pl.col("user_id").is_in(train_users.implode())).group_by("item_id").len()
    return dict(zip(counts["item_id"].to_list(), counts["len"].to_list()))
