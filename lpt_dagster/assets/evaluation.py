"""The evaluation report: every method on the same split, the same catalogue, the same ranking."""


import dataclasses
from pathlib import Path

import dagster as dg
import polars as pl

from lpt_core import text
from lpt_core.baselines import EvalContext, HeadTraining, evaluate_methods
from lpt_core.config import HEAD_METHODS, EvaluationConfig
from lpt_core.models import load_encoder
from lpt_core.paths import outputs_dir
from lpt_core.profiles import EXAMPLE_KEYS, first_train_users
from lpt_core.recommenders import load_baseline_models
from lpt_core.report import build_report
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import TextRows
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.lineage import catalog_table, example_splits, log_tables, profile_tables
from lpt_dagster.metadata import png_markdown
from lpt_dagster.resources import MlflowResource, RecipeResource

GROUP = "evaluation"


def train_item_counts(cleaned_histories: pl.DataFrame, user_examples: pl.DataFrame) -> dict[str, int]:
    """Popularity = interactions of train users only, so no evaluation user's data leaks into it."""
    train_users = user_examples.filter(pl.col("split") == "train")["user_id"].unique()
    counts = cleaned_histories.filter(pl.col("user_id").is_in(train_users.implode())).group_by("item_id").len()
    return dict(zip(counts["item_id"].to_list(), counts["len"].to_list()))


def profiles_for(examples: pl.DataFrame, profiles: pl.DataFrame) -> list[str]:
    joined = examples.select(EXAMPLE_KEYS).join(profiles.select(*EXAMPLE_KEYS, "profile"), on=EXAMPLE_KEYS, how="left", maintain_order="left")
    missing = joined["profile"].null_count()
    if missing:
        raise ValueError(f"{missing} evaluation examples have no profile: rematerialise the profiles asset")
    return joined["profile"].to_list()


def sampled_profiles_for(examples: pl.DataFrame, sampled: pl.DataFrame) -> list[list[str]] | None:
    """Each example's sampled profiles in sample order, or None when none were sampled."""
    if sampled.is_empty():
        return None
    grouped = sampled.sort("sample").group_by(EXAMPLE_KEYS, maintain_order=True).agg(pl.col("profile"))
    joined = examples.select(EXAMPLE_KEYS).join(grouped, on=EXAMPLE_KEYS, how="left", maintain_order="left")
    if joined["profile"].null_count():
        raise ValueError("some evaluation examples have no sampled profiles: rematerialise sampled_profiles")
    return joined["profile"].to_list()


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


def trained_ranks(ctx: EvalContext, cfg, trained_profiles: pl.DataFrame, trained_item_index: dict) -> dict:
    """One row per trained variant: its own profiles, ranked by its own recommender and index."""
    ranks = {}
    for name, index_info in trained_item_index.items():
        variant_ctx = dataclasses.replace(
            ctx,
            index=ItemIndex.load(Path(index_info["path"])),
            encoder=TextEncoder(load_encoder(index_info["encoder_dir"], cfg.models)),
            profiles=profiles_for(ctx.examples, trained_profiles.filter(pl.col("variant") == name)),
        )
        ranks[name] = evaluate_methods(variant_ctx, ["profile"])["profile"]
    return ranks


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def evaluation_report(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    user_examples: pl.DataFrame,
    cleaned_histories: pl.DataFrame,
    item_catalog: pl.DataFrame,
    zero_shot_profiles: pl.DataFrame,
    sampled_profiles: pl.DataFrame,
    item_index: dict,
    baseline_models: dict,
    trained_profiles: pl.DataFrame,
    trained_item_index: dict,
) -> dict:
    """Recall/NDCG/MRR@K of every method with paired bootstrap intervals, as markdown, plot and JSON."""
    cfg = recipe.get()
    ev = cfg.evaluation
    examples = user_examples.filter(pl.col("split") == ev.split)
    index = ItemIndex.load(Path(item_index["path"]))
    ctx = EvalContext(
        examples=examples,
        index=index,
        encoder=TextEncoder(load_encoder(cfg.models.encoder, cfg.models)),
        item_text=dict(zip(item_catalog["item_id"].to_list(), item_catalog["text"].to_list())),
        train_item_counts=train_item_counts(cleaned_histories, user_examples),
        seed=ev.seed,
        history_texts=text.history_texts(examples, item_catalog),
        profiles=profiles_for(examples, zero_shot_profiles),
        sampled_profiles=sampled_profiles_for(examples, sampled_profiles),
        models=load_baseline_models(Path(baseline_models["path"]), index.item_ids.tolist()),
        head_training=head_training(ev, user_examples, item_catalog, zero_shot_profiles),
    )
    ranks = evaluate_methods(ctx, ev.methods)
    ranks.update(trained_ranks(ctx, cfg, trained_profiles, trained_item_index))
    report = build_report(
        ranks, examples["user_id"].to_list(), ks=ev.ks, samples=ev.bootstrap_samples,
        confidence=ev.confidence, seed=ev.seed, baseline=ev.baseline,
        title=f"{cfg.name}: {ev.split} split, {examples.height} examples, {len(ctx.index.item_ids)} items",
    )
    files = report.save(outputs_dir() / "evaluation_report")
    context.log.info("evaluation report:\n%s", report.table_markdown)
    profiles = {"zero_shot_profiles": zero_shot_profiles, "sampled_profiles": sampled_profiles,
                "trained_profiles": trained_profiles}
    with mlflow.asset_run(context, cfg, "evaluation_report") as run:
        log_tables(run, [*example_splits(user_examples, [ev.split]), catalog_table(item_catalog), *profile_tables(profiles)])
        run.log_metrics(report.flat_metrics())
        for path in files.values():
            run.log_artifact(path, "evaluation_report")
    context.add_output_metadata(
        {
            "table": dg.MetadataValue.md(report.table_markdown),
            "plot": png_markdown(files["plot"]),
            "examples": examples.height,
            "users": examples["user_id"].n_unique(),
            "report_folder": dg.MetadataValue.path(str(files["json"].parent)),
            "mlflow_run": mlflow.link(run),
        }
    )
    return report.numbers
