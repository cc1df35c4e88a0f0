"""Which users get profiles: every val/test example, and train examples up to a cap.

Evaluation needs every val/test user; contrastive training (the decoder phase) and the profile_head
evaluation row need train users' profiles too, which on a CPU is the costly part, hence the cap
for small recipes.
"""

from __future__ import annotations

import polars as pl

from lpt_core.config import EvaluationConfig, GenerationConfig

# The columns that identify one example (a user's window of a split).
EXAMPLE_KEYS = ["user_id", "split", "window"]


def select_profile_examples(examples: pl.DataFrame, max_train_users: int | None) -> pl.DataFrame:
    """Val/test rows first (evaluation needs them all), then train rows of the first train users."""
    evaluation = examples.filter(pl.col("split") != "train")
    return pl.concat([evaluation, first_train_users(examples, max_train_users)])


def first_users(frame: pl.DataFrame, max_users: int | None) -> pl.DataFrame:
    """The rows of the first `max_users` users in frame order (None: every row). A prefix rule, so
    a smaller cap always picks a subset of a larger one's rows, and every consumer with the same
    cap picks the same users: training (training.max_train_users) and the head rows
    (evaluation.head_train_users) compare profiles of the same train examples."""
    if max_users is None:
        return frame
    kept_users = frame["user_id"].unique(maintain_order=True).head(max_users)
    return frame.filter(pl.col("user_id").is_in(kept_users.implode()))


def first_train_users(examples: pl.DataFrame, max_users: int | None) -> pl.DataFrame:
    """The train rows of the first `max_users` train users in frame order (None: every train row)."""
    return first_users(examples.filter(pl.col("split") == "train"), max_users)


def profile_train_users(ev: EvaluationConfig) -> int | None:
    """Train users given zero-shot profiles: evaluation.max_train_users, widened to
    evaluation.head_train_users when the profile_head row fits a head on their profiles."""
    if "profile_head" not in ev.methods:
        return ev.max_train_users
    if ev.max_train_users is None or ev.head_train_users is None:
        return None
    return max(ev.max_train_users, ev.head_train_users)


def sampling_configs(gen_cfg: GenerationConfig, samples: int, temperature: float) -> list[GenerationConfig]:
    """One decoding config per profile sample: the recipe's settings, sampled, each with its own
    seed, so every sample is stored (and reused) under its own identity in the ProfileStore."""
    return [
        gen_cfg.model_copy(update={"do_sample": True, "temperature": temperature, "seed": gen_cfg.seed + 1 + k})
        for k in range(samples)
    ]
