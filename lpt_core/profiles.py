"""Which users get profiles: every val/test example, and train examples up to a cap.

Evaluation needs every val/test user; contrastive training (the decoder phase) needs train users'
profiles too, which on a CPU is the costly part, hence the cap for small recipes.
"""

from __future__ import annotations

import polars as pl

from lpt_core.config import GenerationConfig

# The columns that identify one example (a user's window of a split).
EXAMPLE_KEYS = ["user_id", "split", "window"]


def select_profile_examples(examples: pl.DataFrame, max_train_users: int | None) -> pl.DataFrame:
    """Val/test rows first (evaluation needs them all), then train rows of the first train users."""
    evaluation = examples.filter(pl.col("split") != "train")
    train = examples.filter(pl.col("split") == "train")
    if max_train_users is not None:
        kept_users = train["user_id"].unique(maintain_order=True).head(max_train_users)
        train = train.filter(pl.col("user_id").is_in(kept_users.implode()))
    return pl.concat([evaluation, train])


def sampling_configs(gen_cfg: GenerationConfig, samples: int, temperature: float) -> list[GenerationConfig]:
    """One decoding config per profile sample: the recipe's settings, sampled, each with its own
    seed, so every sample is stored (and reused) under its own identity in the ProfileStore."""
    return [
        gen_cfg.model_copy(update={"do_sample": True, "temperature": temperature, "seed": gen_cfg.seed + 1 + k})
        for k in range(samples)
    ]
