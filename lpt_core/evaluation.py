"""The two reports' inputs, made from the pipeline's tables: what the evaluation report's methods
rank with (popularity counts, the head rows, each trained variant's own profiles, recommender and
index) and each variant the profile quality report assesses.

Apart from lpt_core.baselines, which ranks and runs without polars (the GPU benchmark machine has
none); everything here reads polars tables.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from lpt_core import text
from lpt_core.baselines import EvalContext, HeadTraining, evaluate_methods, rank_with_fitted_head
from lpt_core.config import EvaluationConfig, ModelsConfig
from lpt_core.dislikes import encode_profiles
from lpt_core.evaluation_methods import HEAD_METHODS
from lpt_core.models import load_encoder
from lpt_core.profile_quality.report import ProfileVariant
from lpt_core.profiles import first_train_users, joined_profiles, profiles_for
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import TextRows


def head_training(
    ev: EvaluationConfig, user_examples: pl.DataFrame, item_catalog: pl.DataFrame, zero_shot_profiles: pl.DataFrame
) -> HeadTraining | None:
    """The rows the *_head methods fit on, when the report has one: train rows of the first
    evaluation.head_train_users train users, every val row, each as history text and as profile.
    (With evaluation.split "val" the early stopping sees the rows evaluated: a tuning run.)"""
    if not set(HEAD_METHODS) & set(ev.methods):
        return None
    frames = [first_train_users(user_examples, ev.head_train_users), user_examples.filter(pl.col("split") == "val")]
    train, val = (TextRows.of(frame, text.history_texts(frame, item_catalog)) for frame in frames)
    rows = {"history_text": (train, val)}
    if "profile_head" in ev.methods:
        train, val = (TextRows.of(frame, profiles_for(frame, zero_shot_profiles)) for frame in frames)
        rows["profile"] = (train, val)
    return HeadTraining(rows, ev.head)


def trained_variant_ranks(
    ctx: EvalContext, models_cfg: ModelsConfig, variant: str, index_dir: Path, encoder_dir: Path,
    trained_profiles: pl.DataFrame,
) -> np.ndarray:
    """A trained variant's row of the report: its own profiles (the `variant` rows of
    trained_profiles), ranked by its own recommender and index."""
    variant_ctx = dataclasses.replace(
        ctx,
        index=ItemIndex.load(index_dir),
        encoder=TextEncoder(load_encoder(str(encoder_dir), models_cfg)),
        profiles=profiles_for(ctx.examples, variant_profiles(trained_profiles, variant), f"trained_profiles ({variant})"),
    )
    return evaluate_methods(variant_ctx, ["profile"])["profile"]


def under_profile_head_name(variant: str) -> str:
    """The report row of a variant's profiles ranked by profile_head's recommender."""
    return f"{variant}@profile_head"


def trained_profiles_under_profile_head(ctx: EvalContext, variant: str, trained_profiles: pl.DataFrame) -> np.ndarray:
    """A variant's profiles ranked by the recommender of the profile_head row (a head fitted on
    zero-shot train profiles), so that this row minus profile_head is what the LLM's training alone
    changed, the recommender held fixed. (The variant's own row uses its own recommender: when the
    two fits differ, the difference between those rows mixes the two effects.)"""
    texts = profiles_for(ctx.examples, variant_profiles(trained_profiles, variant), f"trained_profiles ({variant})")
    return rank_with_fitted_head(ctx, "profile", texts)


def quality_variant(
    name: str, examples: pl.DataFrame, profiles: pl.DataFrame, index_dir: Path, encoder: Path | str,
    models_cfg: ModelsConfig,
) -> ProfileVariant:
    """One system as the profile quality report assesses it: its profiles of `examples` (profiles
    holds that system's rows only) and its recommender (`encoder`: a model name or folder), which encodes a profile as the served
    model does (its dislikes push their items down)."""
    joined = joined_profiles(examples, profiles, f"the profiles of {name!r}", ("profile", "finished"))
    return ProfileVariant(
        name=name,
        profiles=joined["profile"].to_list(),
        finished=joined["finished"].fill_null(False).to_list(),
        index=ItemIndex.load(index_dir),
        encode=partial(encode_profiles, TextEncoder(load_encoder(str(encoder), models_cfg)).encode),
    )


def variant_profiles(trained_profiles: pl.DataFrame, variant: str) -> pl.DataFrame:
    """The rows trained_profiles holds for one variant."""
    return trained_profiles.filter(pl.col("variant") == variant)
