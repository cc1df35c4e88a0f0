"""What the profile assets and item_index record: how many profiles, how long and how finished,
a few to read; the index's size and encoding speed."""

from __future__ import annotations

import dagster as dg
import polars as pl

from lpt_core import text
from lpt_core.catalog_index import CatalogIndex
from lpt_core.config import Recipe
from lpt_core.profile_writing import ZeroShotProfiles
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import frame_preview
from lpt_dagster.resources import MlflowResource
from lpt_dagster.values import ItemIndexInfo, fields_json


def record_zero_shot_profiles(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, written_profiles: ZeroShotProfiles,
    user_examples: pl.DataFrame, cleaned_items: pl.DataFrame,
) -> None:
    """zero_shot_profiles: how many, how long and how finished, and a few to read."""
    profiles = written_profiles.profiles
    samples = _samples_markdown(profiles, written_profiles.examples, cleaned_items)
    summary = {
        "profiles": profiles.height,
        "newly_generated": written_profiles.newly_generated,
        "mean_tokens": float(profiles["num_tokens"].mean() or 0.0),
        "share_finished_at_end_of_turn": float(profiles["finished"].mean() or 0.0),
        "generation_seconds": written_profiles.seconds,
    }
    with mlflow.asset_run(context, recipe, "zero_shot_profiles") as run:
        run.log_metrics(summary)
        run.log_text(samples, "profile_samples.md")
        log_tables(run, [
            *example_splits(user_examples),
            *read_tables(cleaned_items=cleaned_items),
            *written([TrackedTable("zero_shot_profiles", profiles, "user_examples", "profiles")]),
        ])
    context.add_output_metadata(
        {**summary, "model": written_profiles.model_id, "samples": dg.MetadataValue.md(samples),
         "preview": frame_preview(profiles), "mlflow_run": mlflow.link(run)}
    )


def _samples_markdown(profiles: pl.DataFrame, examples: pl.DataFrame, items: pl.DataFrame, count: int = 3) -> str:
    """A few evaluation users' histories next to their profiles: people want to read them."""
    is_eval = (profiles["split"] != "train").arg_true()[:count]
    blocks = []
    histories = text.history_texts(examples[is_eval], items)
    for row, history in zip(profiles[is_eval].iter_rows(named=True), histories):
        blocks.append(
            f"### user {row['user_id']} ({row['split']})\n\n**History**\n\n```\n{history}\n```\n\n"
            f"**Profile** ({row['num_tokens']} tokens)\n\n> {row['profile']}\n"
        )
    return "\n".join(blocks)


def record_sampled_profiles(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, profiles: pl.DataFrame,
    user_examples: pl.DataFrame, cleaned_items: pl.DataFrame,
) -> None:
    """sampled_profiles: how many per example and in all."""
    summary = {"samples_per_example": recipe.evaluation.sampled_profiles, "profiles": profiles.height}
    with mlflow.asset_run(context, recipe, "sampled_profiles") as run:
        run.log_metrics(summary)
        log_tables(run, [
            *example_splits(user_examples, [recipe.evaluation.split]),
            *read_tables(cleaned_items=cleaned_items),
            *written([TrackedTable("sampled_profiles", profiles, "user_examples", "profiles")]),
        ])
    context.add_output_metadata({**summary, "preview": frame_preview(profiles), "mlflow_run": mlflow.link(run)})


def record_item_index(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, info: ItemIndexInfo,
    built: CatalogIndex, item_catalog: pl.DataFrame,
) -> None:
    """item_index: its size and encoding speed."""
    seconds = built.encode_seconds
    with mlflow.asset_run(context, recipe, "item_index") as run:
        run.log_metrics({"items": info.items, "encode_seconds": seconds, "items_per_second": info.items / seconds})
        log_tables(run, [catalog_table(item_catalog)])
    context.add_output_metadata({**fields_json(info), "encode_seconds": seconds, "mlflow_run": mlflow.link(run)})
