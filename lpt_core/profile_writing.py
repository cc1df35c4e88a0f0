"""The pipeline's profile tables: the untrained generator's zero-shot and sampled profiles, and
every trained variant's. The profile assets call these. All are written through one ProfileStore,
so a profile already stored for the same prompt, model and decoding is reused, not regenerated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import polars as pl

from lpt_core import text
from lpt_core.config import Recipe
from lpt_core.generation.factory import opened_generator
from lpt_core.models import load_tokenizer
from lpt_core.profiles import (
    EXAMPLE_KEYS,
    joined_profiles,
    profile_train_users,
    sampling_configs,
    select_profile_examples,
    write_profiles,
)
from lpt_core.training.policy import trained_profile_writer
from lpt_core.training.variants import get_variant

if TYPE_CHECKING:
    from lpt_core.generation.store import ProfileStore

# What trained_profiles keeps of each variant's profiles, beside EXAMPLE_KEYS and the variant name.
PROFILE_COLUMNS = ("profile", "num_tokens", "finished")
# A progress callback (done, total) for each named part of the work ("sample 1/2", a variant).
ProgressFor = Callable[[str], Callable[[int, int], None] | None]


def _no_progress(_: str) -> None:
    return None


@dataclass(frozen=True)
class ZeroShotProfiles:
    """zero_shot_profiles: the profiles of `examples`, how many were newly generated (the rest
    came from the store), the seconds it took and the writer's model id."""

    profiles: pl.DataFrame
    examples: pl.DataFrame
    newly_generated: int
    seconds: float
    model_id: str


def write_zero_shot_profiles(
    user_examples: pl.DataFrame, items: pl.DataFrame, recipe: Recipe, store: ProfileStore,
    progress: Callable[[int, int], None] | None = None,
) -> ZeroShotProfiles:
    """The untrained generator's profile of every val/test example and of the train examples of
    the first train users (lpt_core.profiles.profile_train_users)."""
    examples = select_profile_examples(user_examples, profile_train_users(recipe.evaluation))
    started = time.perf_counter()
    with opened_generator(recipe.models.generator, recipe.models, recipe.generation) as generator:
        profiles, fresh = write_profiles(examples, items, generator, store, recipe, progress=progress)
    return ZeroShotProfiles(profiles, examples, fresh, time.perf_counter() - started, generator.model_id)


def write_sampled_profiles(
    user_examples: pl.DataFrame, items: pl.DataFrame, recipe: Recipe, store: ProfileStore,
    progress: ProgressFor = _no_progress,
) -> pl.DataFrame:
    """evaluation.sampled_profiles profiles per example of evaluation.split, sampled from the
    untrained generator at evaluation.sample_temperature: EXAMPLE_KEYS, sample, profile (no rows
    when the recipe asks for none)."""
    ev = recipe.evaluation
    examples = user_examples.filter(pl.col("split") == ev.split)
    keys = examples.select(EXAMPLE_KEYS)
    frames = [pl.DataFrame(schema={**dict(keys.schema), "sample": pl.Int32, "profile": pl.String})]
    if ev.sampled_profiles:
        tokenizer = load_tokenizer(recipe.models.generator)
        prompts = text.build_prompts(examples, items, tokenizer, recipe.prompt, recipe.data.source)
        for sample, gen_cfg in enumerate(sampling_configs(recipe.generation, ev.sampled_profiles, ev.sample_temperature)):
            with opened_generator(recipe.models.generator, recipe.models, gen_cfg) as generator:
                generated, _ = store.get_or_generate(
                    prompts, generator, gen_cfg, progress=progress(f"sample {sample + 1}/{ev.sampled_profiles}")
                )
            frames.append(keys.with_columns(
                pl.lit(sample, dtype=pl.Int32).alias("sample"),
                pl.Series("profile", [g.text for g in generated], dtype=pl.String),
            ))
    return pl.concat(frames)


class TrainedWriter(Protocol):
    """A trained variant's profile writer: its LoRA adapter, the checkpoint it came from, and
    whether it trains the writer at all (CL only does not)."""

    @property
    def adapter_dir(self) -> Path: ...

    @property
    def checkpoint(self) -> Path: ...

    @property
    def trains_generator(self) -> bool: ...


def write_trained_profiles(
    user_examples: pl.DataFrame, items: pl.DataFrame, zero_shot_profiles: pl.DataFrame, recipe: Recipe,
    trained: Mapping[str, TrainedWriter], store: ProfileStore, progress: ProgressFor = _no_progress,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Every variant's profiles of the evaluation.split examples: EXAMPLE_KEYS, PROFILE_COLUMNS and
    the variant's name; and how many each writing variant newly generated. A variant that does not train
    its writer keeps the zero-shot profiles; the others write with their merged trained writer."""
    examples = user_examples.filter(pl.col("split") == recipe.evaluation.split)
    frames, fresh = [], {}
    for name, writer in trained.items():
        if not writer.trains_generator:
            profiles = joined_profiles(examples, zero_shot_profiles, "zero_shot_profiles", PROFILE_COLUMNS)
        else:
            generator = trained_profile_writer(
                get_variant(name).recipe_for(recipe), writer.adapter_dir, model_id=f"{name}@{writer.checkpoint.name}"
            )
            profiles, fresh[name] = write_profiles(
                examples, items, generator, store, recipe, progress=progress(f"{name} profiles")
            )
        frames.append(profiles.select(*EXAMPLE_KEYS, *PROFILE_COLUMNS).with_columns(pl.lit(name).alias("variant")))
    return pl.concat(frames), fresh
