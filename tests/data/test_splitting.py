"""The user-level split: assignment, catalogue, first-N history, next-new-item target, windows."""

from __future__ import annotations

import json

import polars as pl
import pytest
from builders import interactions_table

from lpt_core.config import DataConfig, SplitConfig
from lpt_core.data import schemas
from lpt_core.data.cleaning import clean
from lpt_core.data.readers.movielens import read_movielens_100k
from lpt_core.data.splitting import Split, drop_long_prompts, split_users
from lpt_core.paths import raw_data_dir


def _user(user: str, items: str, start: int) -> list[tuple[str, str, int]]:
    """One user's interactions on single-letter items, one time unit apart from `start`."""
    return [(user, item, start + k) for k, item in enumerate(items)]


def _population(n_users: int) -> pl.DataFrame:
    """User k starts at time k and rates the same six items: every user has a valid example."""
    rows = [r for k in range(n_users) for r in _user(f"u{k:02d}", "abcdef", 100 * k)]
    return interactions_table(rows)


def _with_late_user(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Add a user after everyone else, so with train_frac=0.5 the others are all train users."""
    return rows + [(f"late{k}", "z", 10_000 + k) for k in range(len({u for u, _, _ in rows}))]


def _example(split: Split, user: str, window: int = 0) -> dict:
    rows = split.examples.filter((pl.col("user_id") == user) & (pl.col("window") == window))
    assert rows.height == 1, f"expected one example for {user} window {window}"
    return rows.row(0, named=True)


def test_users_are_split_by_first_interaction_time():
    interactions = _population(20).sample(fraction=1.0, shuffle=True, seed=3)  # input order irrelevant
    split = split_users(interactions, SplitConfig(history_len=2))
    assert split.examples.schema == schemas.EXAMPLES
    by_split = {
        name: set(split.examples.filter(pl.col("split") == name)["user_id"]) for name in schemas.SPLITS
    }
    assert by_split["train"] == {f"u{k:02d}" for k in range(16)}  # the earliest 80%
    assert len(by_split["val"]) == 2 and len(by_split["test"]) == 2
    assert not (by_split["train"] & by_split["val"] or by_split["val"] & by_split["test"])


def test_ties_on_first_time_are_broken_by_user_id():
    rows = [r for user in ("b", "a", "c") for r in _user(user, "xyz", 0)] + _user("d", "xyz", 5)
    split = split_users(interactions_table(rows), SplitConfig(history_len=1, train_frac=0.5))
    assert set(split.examples.filter(pl.col("split") == "train")["user_id"]) == {"a", "b"}


def test_val_test_assignment_is_seeded():
    def held_out(seed: int) -> list[str]:
        split = split_users(_population(60), SplitConfig(history_len=2, seed=seed))
        return split.examples.filter(pl.col("split") == "val")["user_id"].sort().to_list()

    assert held_out(0) == held_out(0)
    assert held_out(0) != held_out(1)


def test_history_is_first_n_in_time_order_with_stable_ties():
    # Timestamps out of input order, and a tie (c, d at t=3) that must keep input order.
    rows = [("u", "e", 9), ("u", "b", 2), ("u", "c", 3), ("u", "a", 1), ("u", "d", 3), ("u", "f", 10)]
    split = split_users(interactions_table(_with_late_user(rows)), SplitConfig(history_len=4, train_frac=0.5))
    example = _example(split, "u")
    assert example["history_item_ids"] == ["a", "b", "c", "d"]
    assert example["history_ratings"] == [3.0, 1.0, 2.0, 4.0]  # input positions of a, b, c, d
    assert example["target_item_id"] == "e"


def test_target_is_the_first_later_item_not_in_history():
    rows = _user("u", "abcbacd", 0)
    split = split_users(interactions_table(_with_late_user(rows)), SplitConfig(history_len=3, train_frac=0.5))
    example = _example(split, "u")
    assert example["history_item_ids"] == ["a", "b", "c"]
    assert example["target_item_id"] == "d"  # b, a, c repeat the history and are skipped


def test_user_without_new_item_is_dropped():
    rows = _user("v", "abc", 0) + _user("u", "abab", 10)
    split = split_users(interactions_table(rows), SplitConfig(history_len=2, train_frac=0.5))
    assert split.examples["user_id"].to_list() == ["v"]
    assert split.dropped_users == {"train": 0, "test": 1}


def test_held_out_interactions_on_unseen_items_are_dropped_first():
    # Train users know a..e only. The held-out user's "z" is dropped BEFORE their history is
    # built, so their history is (a, z->skipped, b) -> [a, b] and the target skips "y" too.
    train = [r for k in range(8) for r in _user(f"t{k}", "abcde", k)]
    held = [("h1", "a", 100), ("h1", "z", 101), ("h1", "b", 102), ("h1", "y", 103), ("h1", "c", 104)]
    held += [("h2", "a", 200), ("h2", "b", 201), ("h2", "d", 202)]
    split = split_users(interactions_table(train + held), SplitConfig(history_len=2, train_frac=0.8))
    assert split.catalog_item_ids.to_list() == ["a", "b", "c", "d", "e"]
    example = _example(split, "h1")
    assert example["split"] in ("val", "test")
    assert (example["history_item_ids"], example["target_item_id"]) == (["a", "b"], "c")
    assert split.stats()["share_in_catalogue"] == {"targets": 1.0, "histories": 1.0}


def test_catalogue_is_sorted_train_items_only():
    train = [r for k in range(8) for r in _user(f"t{k}", "dcba", k)]
    held = _user("h1", "abq", 100) + _user("h2", "abr", 200)
    split = split_users(interactions_table(train + held), SplitConfig(history_len=1))
    assert split.catalog_item_ids.to_list() == ["a", "b", "c", "d"]


def test_windows_slide_by_stride_and_skip_incomplete_ones():
    rows = _user("u", "abcdefg", 0)
    cfg = SplitConfig(history_len=3, train_frac=0.5, windows_per_user=4, window_stride=2)
    split = split_users(interactions_table(_with_late_user(rows)), cfg)
    got = {
        row["window"]: (row["history_item_ids"], row["target_item_id"])
        for row in split.examples.filter(pl.col("user_id") == "u").iter_rows(named=True)
    }
    # Window 2 starts at f: only f, g remain, fewer than 3 -> skipped; window 3 likewise.
    assert got == {0: (["a", "b", "c"], "d"), 1: (["c", "d", "e"], "f")}


def test_val_and_test_users_get_their_own_number_of_windows():
    interactions = interactions_table([r for k in range(10) for r in _user(f"u{k}", "abcdefgh", 100 * k)])
    cfg = SplitConfig(history_len=2, windows_per_user=3, eval_windows_per_user=1, window_stride=2)
    windows = split_users(interactions, cfg).examples.group_by("split").agg(pl.col("window").unique().sort())
    assert dict(windows.iter_rows()) == {"train": [0, 1, 2], "val": [0], "test": [0]}
    more = split_users(interactions, cfg.model_copy(update={"eval_windows_per_user": 2})).examples
    assert more.filter(pl.col("split") == "test")["window"].unique().sort().to_list() == [0, 1]
    # Unset, val/test users get windows_per_user windows, as before.
    same = split_users(interactions, cfg.model_copy(update={"eval_windows_per_user": None})).examples
    assert same.filter(pl.col("split") != "train")["window"].unique().sort().to_list() == [0, 1, 2]


def test_eval_windows_are_first_n_windows():
    with pytest.raises(ValueError, match="leave it unset for leave_last_out"):
        SplitConfig(strategy="leave_last_out", eval_windows_per_user=2)


def test_leave_last_out_takes_last_new_item_and_the_n_before_it():
    # u: the last "b" is not among the two before it (c, a), so it is the target.
    rows = _user("u", "abcab", 0) + _user("v", "abcbc", 10)
    cfg = SplitConfig(strategy="leave_last_out", history_len=2, train_frac=0.5)
    split = split_users(interactions_table(rows), cfg)
    assert (_example(split, "u")["history_item_ids"], _example(split, "u")["target_item_id"]) == (
        ["c", "a"],
        "b",
    )
    # For v the last "c" and "b" repeat their previous two; the last new one is "c" at position 2.
    assert (_example(split, "v")["history_item_ids"], _example(split, "v")["target_item_id"]) == (
        ["a", "b"],
        "c",
    )


def test_reviews_keep_nulls_in_history_lists():
    rows = _with_late_user(_user("u", "abc", 0))
    reviews = ["fine", None, "meh", "late"]
    split = split_users(interactions_table(rows, reviews=reviews), SplitConfig(history_len=2, train_frac=0.5))
    assert _example(split, "u")["history_reviews"] == ["fine", None]


def test_drop_long_prompts_removes_flagged_examples():
    split = split_users(_population(10), SplitConfig(history_len=2))
    counts = pl.Series([5000 if k % 3 == 0 else 10 for k in range(split.examples.height)])
    shorter, removed = drop_long_prompts(split, counts, max_tokens=1024)
    assert removed == (split.examples.height + 2) // 3
    assert shorter.examples.height == split.examples.height - removed
    assert shorter.catalog_item_ids.equals(split.catalog_item_ids)
    with pytest.raises(ValueError, match="prompt_token_counts"):
        drop_long_prompts(split, counts[:-1], max_tokens=1024)


@pytest.mark.slow
def test_real_movielens_100k_split_stats():
    folder = raw_data_dir() / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        pytest.skip(f"{folder} not fetched")
    raw = read_movielens_100k(folder)
    assert raw.interactions.height == 100_000
    assert raw.interactions["user_id"].n_unique() == 943
    assert raw.items.height == 1682
    interactions, _, report = clean(raw, DataConfig())
    split = split_users(interactions, SplitConfig())
    stats = split.stats()
    print(report.to_markdown())
    print(json.dumps(stats, indent=2))
    assert sum(part["users"] for part in stats["splits"].values()) <= 943
    assert stats["share_in_catalogue"]["targets"] == 1.0
