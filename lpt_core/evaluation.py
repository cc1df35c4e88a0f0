"""The two reports' inputs, made from the pipeline's tables: what the evaluation report's methods
rank with (popularity counts, the head rows, each trained variant's own profiles, recommender and
index) and each variant the profile quality report assesses; and the evaluation report itself,
every method and trained variant ranked on one context (`evaluate`), as the evaluation_report
asset makes it.

Apart from lpt_core.baselines, which ranks and runs without polars (the GPU benchmark machine has
none); everything here reads polars tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from lpt_core import text
from lpt_core.baselines import EvalContext, HeadTraining, evaluate_methods, rank_with_fitted_head
from lpt_core.config import EvaluationConfig, ModelsConfig, Recipe
from lpt_core.data.later_items import later_targets, next_interactions
from lpt_core.data.splitting import train_item_counts
from lpt_core.dislikes import encode_profiles
from lpt_core.evaluation_methods import HEAD_METHODS
from lpt_core.models import load_encoder, load_generator
from lpt_core.profile_quality.report import ProfileVariant, QualityReport, QualitySettings, assess_profiles
from lpt_core.profile_quality.simulated_reader import LikelihoodJudge
from lpt_core.profiles import first_train_users, joined_profiles, profiles_for, sampled_profiles_for
from lpt_core.recommenders import load_baseline_models
from lpt_core.report import EvaluationReport, build_report
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.sources import data_source
from lpt_core.training.item_head import TextRows
from lpt_core.training.variants import get_variant


@dataclasses.dataclass(frozen=True)
class EvaluationTables:
    """The pipeline's tables the evaluation report reads (each the asset of the same name)."""

    user_examples: pl.DataFrame
    cleaned_histories: pl.DataFrame
    item_catalog: pl.DataFrame
    zero_shot_profiles: pl.DataFrame
    sampled_profiles: pl.DataFrame
    trained_profiles: pl.DataFrame


class TrainedRanker(Protocol):
    """Where a trained variant's recommender is: its catalogue index and its encoder folders."""

    @property
    def folder(self) -> Path: ...

    @property
    def encoder_dir(self) -> Path: ...


def evaluation_context(recipe: Recipe, tables: EvaluationTables, index_dir: Path, baselines_dir: Path) -> EvalContext:
    """What every method of the report ranks evaluation.split's examples with: the base index
    (item_index's folder), the recipe's encoder, the history baselines saved in `baselines_dir`,
    the train split's popularity, the zero-shot and sampled profiles and the head rows."""
    ev = recipe.evaluation
    examples = evaluation_rows(tables.user_examples, ev)
    catalog = tables.item_catalog
    index = ItemIndex.load(index_dir)
    return EvalContext(
        examples=examples,
        index=index,
        encoder=TextEncoder(load_encoder(recipe.models.encoder, recipe.models)),
        item_text=dict(zip(catalog["item_id"].to_list(), catalog["text"].to_list())),
        train_item_counts=train_item_counts(tables.cleaned_histories, tables.user_examples),
        seed=ev.seed,
        history_texts=text.history_texts(examples, catalog),
        profiles=profiles_for(examples, tables.zero_shot_profiles),
        sampled_profiles=sampled_profiles_for(examples, tables.sampled_profiles),
        models=load_baseline_models(baselines_dir, index.item_ids.tolist()),
        head_training=head_training(ev, tables.user_examples, catalog, tables.zero_shot_profiles),
    )


def evaluation_rows(user_examples: pl.DataFrame, ev: EvaluationConfig) -> pl.DataFrame:
    """The report's rows: every evaluation.split window, once per target. The target is the
    window's next item and, with evaluation.targets_per_window N > 1, each of the user's next N - 1
    interactions after it as well (fewer at the user's last window, none already in the history):
    the same profile and history, ranked against each."""
    rows = user_examples.filter(pl.col("split") == ev.split)
    if ev.targets_per_window == 1:
        return rows
    following = next_interactions(rows)
    targets = [
        [row["target_item_id"], *later_targets(row, following, ev.targets_per_window - 1)]
        for row in rows.iter_rows(named=True)
    ]
    return rows.with_columns(pl.Series("target_item_id", targets, dtype=pl.List(pl.String))).explode("target_item_id")


def evaluate(
    recipe: Recipe, tables: EvaluationTables, index_dir: Path, baselines_dir: Path, trained: Mapping[str, TrainedRanker]
) -> EvaluationReport:
    """The evaluation report: every method of evaluation.methods and every trained variant (its
    own profiles, recommender and index; and under profile_head's recommender when that row is
    reported and the variant trains its writer), with paired bootstrap intervals."""
    ev = recipe.evaluation
    ctx = evaluation_context(recipe, tables, index_dir, baselines_dir)
    ranks = evaluate_methods(ctx, ev.methods)
    for name, ranker in trained.items():
        ranks[name] = trained_variant_ranks(
            ctx, recipe.models, name, ranker.folder, ranker.encoder_dir, tables.trained_profiles
        )
        if "profile_head" in ev.methods and get_variant(name).trains_generator:
            ranks[under_profile_head_name(name)] = trained_profiles_under_profile_head(ctx, name, tables.trained_profiles)
    return build_report(
        ranks, ctx.examples["user_id"].to_list(), ks=ev.ks, samples=ev.bootstrap_samples,
        confidence=ev.confidence, seed=ev.seed, baseline=ev.baseline,
        title=f"{recipe.name}: {ev.split} split, {ctx.examples.height} examples{_targets_note(ev)}, "
              f"{len(ctx.index.item_ids)} items",
    )


def _targets_note(ev: EvaluationConfig) -> str:
    if ev.targets_per_window == 1:
        return ""
    return f" (each window's profile against its next {ev.targets_per_window} interactions)"


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


def assess_quality(
    recipe: Recipe, examples: pl.DataFrame, item_catalog: pl.DataFrame, zero_shot_profiles: pl.DataFrame,
    trained_profiles: pl.DataFrame, index_dir: Path, trained: Mapping[str, TrainedRanker],
) -> QualityReport:
    """The profile quality report of `examples` (lpt_core.profiles.assessed_examples): the
    zero-shot profiles with the base recommender (item_index's folder, the recipe's encoder) and
    every trained variant's with its own, judged by the recipe's quality.judge."""
    quality, ev = recipe.quality, recipe.evaluation
    variants = [quality_variant("zero_shot", examples, zero_shot_profiles, index_dir, recipe.models.encoder,
                                recipe.models)]
    for name, ranker in trained.items():
        variants.append(quality_variant(
            name, examples, variant_profiles(trained_profiles, name), ranker.folder, ranker.encoder_dir, recipe.models
        ))
    model, tokenizer = load_generator(quality.judge, recipe.models)
    judge = LikelihoodJudge(
        model, tokenizer, data_source(recipe.data.source).reader_question, batch_size=quality.judge_batch_size
    )
    settings = QualitySettings(
        candidates=quality.candidates, edits_per_user=quality.edits_per_user, seed=quality.seed,
        bootstrap_samples=ev.bootstrap_samples, confidence=ev.confidence, source=recipe.data.source,
    )
    title = f"{recipe.name}: profile quality, {ev.split} split, judge {quality.judge}"
    return assess_profiles(variants, examples, item_catalog, judge, settings, title=title)


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
