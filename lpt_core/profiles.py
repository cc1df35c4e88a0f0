"""Which users get profiles, how they are written, and how a table of profiles is matched back to
the examples that use them.

Evaluation needs every val/test user; contrastive training (the decoder phase) and the profile_head
evaluation row need train users' profiles too, which on a CPU is the costly part, hence the cap
for small recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import polars as pl

from lpt_core import text
from lpt_core.config import EvaluationConfig, GenerationConfig, Recipe
from lpt_core.models import load_tokenizer

if TYPE_CHECKING:
    from lpt_core.generation.base import ProfileGenerator
    from lpt_core.generation.store import ProfileStore

# The columns that identify one example (a user's window of a split).
EXAMPLE_KEYS = ["user_id", "split", "window"]


def select_profile_examples(examples: pl.DataFrame, max_train_users: int | None) -> pl.DataFrame:
    """Val/test rows first (evaluation needs them all), then train rows of the first train users."""
    evaluation = examples.filter(pl.col("split") != "train")
    return pl.concat([evaluation, first_train_users(examples, max_train_users)])


def first_users(frame: pl.DataFrame, max_users: int | None, skip_users: int = 0) -> pl.DataFrame:
    """The rows of the first `max_users` users in frame order after the first `skip_users` (None:
    every one after them). A prefix rule, so a smaller cap always picks a subset of a larger one's
    rows, and every consumer with the same cap picks the same users: training
    (training.max_train_users) and the head rows (evaluation.head_train_users) compare profiles of
    the same train examples, and training.rl_users takes the users right after them."""
    if max_users is None and not skip_users:
        return frame
    users = frame["user_id"].unique(maintain_order=True).slice(skip_users, max_users)
    return frame.filter(pl.col("user_id").is_in(users.implode()))


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


def assessed_examples(examples: pl.DataFrame, split: str, max_users: int | None) -> pl.DataFrame:
    """The `split` rows of its first `max_users` users (all of them for None): the rows the
    profile quality report assesses."""
    return first_users(examples.filter(pl.col("split") == split), max_users)


def write_profiles(
    examples: pl.DataFrame,
    items: pl.DataFrame,
    generator: ProfileGenerator,
    store: ProfileStore,
    recipe: Recipe,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pl.DataFrame, int]:
    """One profile per example row, written by `generator` from the recipe's prompt, through the
    store (a profile already stored for the same prompt, model and decoding is reused). Returns the
    EXAMPLE_KEYS + profile, num_tokens, finished frame and how many profiles were newly generated."""
    tokenizer = load_tokenizer(recipe.models.generator)
    prompts = text.build_prompts(examples, items, tokenizer, recipe.prompt, recipe.data.source)
    generated, fresh = store.get_or_generate(prompts, generator, recipe.generation, progress=progress)
    profiles = examples.select(EXAMPLE_KEYS).with_columns(
        pl.Series("profile", [g.text for g in generated], dtype=pl.String),
        pl.Series("num_tokens", [g.num_tokens for g in generated], dtype=pl.Int32),
        pl.Series("finished", [g.finished for g in generated], dtype=pl.Boolean),
    )
    return profiles, fresh


def joined_profiles(
    examples: pl.DataFrame, profiles: pl.DataFrame, what: str, columns: Sequence[str] = ("profile",)
) -> pl.DataFrame:
    """`profiles`' `columns` for each row of `examples`, in the examples' order. An example with no
    profile is an error naming `what` to rematerialise: a silently missing profile would rank as
    an empty query."""
    joined = examples.select(EXAMPLE_KEYS).join(
        profiles.select(*EXAMPLE_KEYS, *columns), on=EXAMPLE_KEYS, how="left", maintain_order="left"
    )
    missing = joined["profile"].null_count()
    if missing:
        raise ValueError(f"{missing} of {examples.height} examples have no profile in {what}: rematerialise it")
    return joined


def profiles_for(examples: pl.DataFrame, profiles: pl.DataFrame, what: str = "the profiles asset") -> list[str]:
    """Each example's profile, in the examples' order."""
    return joined_profiles(examples, profiles, what)["profile"].to_list()


def sampled_profiles_for(examples: pl.DataFrame, sampled: pl.DataFrame) -> list[list[str]] | None:
    """Each example's sampled profiles in sample order, or None when none were sampled."""
    if sampled.is_empty():
        return None
    grouped = sampled.sort("sample").group_by(EXAMPLE_KEYS, maintain_order=True).agg(pl.col("profile"))
    return profiles_for(examples, grouped, "sampled_profiles")
