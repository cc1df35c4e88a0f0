"""Which decoding settings the sampled-profile row uses; which train examples get zero-shot
profiles, and which the head rows fit on: the same prefix."""

from __future__ import annotations

import polars as pl
from builders import example_row, examples_table, items_table

from lpt_core.config import EvaluationConfig, GenerationConfig
from lpt_core.generation.store import profile_key
from lpt_core.profiles import (
    first_train_users,
    first_users,
    profile_train_users,
    sampling_configs,
    select_profile_examples,
)


def test_each_sample_is_sampled_with_its_own_seed_and_identity():
    greedy = GenerationConfig(max_new_tokens=16, seed=7)
    configs = sampling_configs(greedy, samples=3, temperature=0.7)
    assert [c.seed for c in configs] == [8, 9, 10]  # never the greedy run's own seed
    assert all(c.do_sample and c.temperature == 0.7 and c.max_new_tokens == 16 for c in configs)
    keys = {profile_key("prompt", "model", c.model_dump_json()) for c in configs}
    assert len(keys) == 3  # stored and reused separately
    assert not greedy.do_sample  # the recipe's own settings are left alone


def frame() -> pl.DataFrame:
    rows = [("t2", "train", 0), ("t1", "train", 0), ("t2", "train", 1), ("v1", "val", 0), ("t3", "train", 0)]
    return pl.DataFrame(rows, schema=["user_id", "split", "window"], orient="row")


def test_first_train_users_is_a_prefix_rule():
    assert first_train_users(frame(), 1).rows() == [("t2", "train", 0), ("t2", "train", 1)]
    assert first_train_users(frame(), 2)["user_id"].to_list() == ["t2", "t1", "t2"]
    assert first_train_users(frame(), None).height == 4
    assert select_profile_examples(frame(), 1)["user_id"].to_list() == ["v1", "t2", "t2"]


def test_training_and_the_head_rows_take_the_same_train_users():
    """The head rows (evaluation.head_train_users) and training (training.max_train_users) pick
    users by one rule, so with equal caps they compare profiles of the same train examples."""
    train = frame().filter(pl.col("split") == "train")
    assert first_users(train, 2).equals(first_train_users(frame(), 2))
    assert first_users(train, None).equals(train)


def test_skipped_users_are_the_ones_a_cap_would_take():
    train = frame().filter(pl.col("split") == "train")
    assert first_users(train, 1, skip_users=1)["user_id"].to_list() == ["t1"]
    assert first_users(train, None, skip_users=1)["user_id"].to_list() == ["t1", "t3"]
    assert first_users(train, 5, skip_users=3).is_empty()


def test_profile_head_widens_the_profiled_train_users():
    base = {"max_train_users": 8, "head_train_users": 50}
    assert profile_train_users(EvaluationConfig(**base)) == 8  # no profile_head row
    assert profile_train_users(EvaluationConfig(**base, methods=("profile", "profile_head"))) == 50
    assert profile_train_users(EvaluationConfig(**{**base, "head_train_users": 4}, methods=("profile_head",))) == 8
    assert profile_train_users(EvaluationConfig(max_train_users=8, methods=("profile_head",))) is None


def test_both_head_rows_fit_on_the_same_train_examples():
    from lpt_core.evaluation import head_training

    items = items_table([f"m{i}" for i in range(6)], title=[f"Movie {i}" for i in range(6)], categories=[["Drama"]] * 6)
    rows = [("t2", "train", 0), ("t1", "train", 0), ("t2", "train", 1), ("v1", "val", 0), ("s1", "test", 0)]
    examples = examples_table(*[
        example_row(u, s, ["m0", "m1"], f"m{2 + n}", window=w, history_ratings=[4.0, 3.0])
        for n, (u, s, w) in enumerate(rows)
    ])
    profiles = examples.select("user_id", "split", "window").with_columns(
        pl.format("profile of {} {}", "user_id", "window").alias("profile")
    )
    ev = EvaluationConfig(methods=("history_text_head", "profile_head", "profile"), head_train_users=1)

    training = head_training(ev, examples, items, profiles)

    (history_train, history_val), (profile_train, profile_val) = training.rows["history_text"], training.rows["profile"]
    assert history_train.targets == profile_train.targets == ["m2", "m4"]  # user t2's two windows
    assert history_val.targets == profile_val.targets == ["m5"]
    assert profile_train.texts == ["profile of t2 0", "profile of t2 1"]
    assert history_train.texts[0].startswith("Title: Movie 0")
    assert training.config == ev.head
    assert head_training(EvaluationConfig(), examples, items, profiles) is None
