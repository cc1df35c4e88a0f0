"""What the training assets record: each variant's training run (its tables, every step's
metrics, its adapter and recommender), its curves, its profiles and its index."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lpt_core.catalog_index import CatalogIndex
from lpt_core.config import Recipe
from lpt_core.tracking import RunHandle
from lpt_core.training.alternation import TrainingCallbacks, TrainingResult
from lpt_core.training.curves import CURVE_KEYS, save_training_curves
from lpt_core.training.variants import get_variant
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import frame_preview, png_markdown
from lpt_dagster.resources import MlflowResource
from lpt_dagster.values import TrainedGenerator, TrainedIndexes, TrainedRecommender, fields_json


class _TrainingProgress:
    """Training progress to the variant's MLflow run (metrics per step) and the Dagster log."""

    def __init__(self, run: RunHandle, context: dg.AssetExecutionContext, variant: str) -> None:
        self.run, self.context, self.variant = run, context, variant
        self.steps: dict[str, int] = {}

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        # One running step count per phase, so curves continue across rounds.
        global_step = self.steps.get(phase, 0)
        self.steps[phase] = global_step + 1
        numbers = {f"{phase}.{k}": float(v) for k, v in values.items() if isinstance(v, int | float)}
        self.run.log_metrics(numbers, step=global_step)
        self.context.log.info(f"{self.variant} round {round_index} {phase} step {step}: {numbers}")

    def artifact_text(self, name: str, text_: str) -> None:
        self.run.log_text(text_, f"samples/{name}")

    def log(self, message: str) -> None:
        self.context.log.info(f"{self.variant}: {message}")


@dataclass(frozen=True)
class TrackedVariant:
    """One variant trained under its own MLflow run: its part of trained_generator and of
    trained_recommender, what the asset's metadata says of it, and its training curves."""

    generator: TrainedGenerator
    recommender: TrainedRecommender
    summary: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]]


def tracked_training(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, name: str,
    tables: Iterable[TrackedTable], train: Callable[[TrainingCallbacks], TrainingResult],
) -> TrackedVariant:
    """`train(callbacks)` for variant `name` inside its MLflow run "training/<name>" (params: the
    variant's recipe), which gets the tables it trained on, every step's metrics, its adapter,
    recommender and per-phase summary."""
    variant = get_variant(name)
    variant_recipe = variant.recipe_for(recipe)
    overridden = {key: f"{mine!r} -> {theirs!r}" for key, (mine, theirs) in variant.overridden_settings(recipe).items()}
    for key, change in overridden.items():
        context.log.info("%s overrides the recipe's %s: %s", name, key, change)
    started = time.perf_counter()
    with mlflow.asset_run(context, variant_recipe, f"training/{name}") as run:
        run.set_tags({"lpt.variant": name, "lpt.variant_description": variant.description})
        log_tables(run, tables)
        result = train(_TrainingProgress(run, context, name))
        run.log_artifact(result.adapter_dir, "generator_adapter")
        run.log_artifact(result.encoder_dir, "recommender")
        run.log_dict({"base_model": recipe.models.generator, "history": result.history}, "training_summary.json")
        curves = _metric_histories(run)
    seconds = time.perf_counter() - started
    return TrackedVariant(
        generator=TrainedGenerator(
            adapter_dir=result.adapter_dir, base_model=recipe.models.generator,
            trains_generator=variant.trains_generator, checkpoint=result.checkpoint,
            training_hash=variant_recipe.training_hash(), mlflow_run_id=run.run_id,
        ),
        recommender=TrainedRecommender(
            encoder_dir=result.encoder_dir, item_bias=result.item_bias, item_head=result.item_head
        ),
        summary={
            "seconds": round(seconds, 1), "resumed_from": result.resumed_from,
            "last_phase": result.history[-1] if result.history else None, "mlflow_run": mlflow.run_url(run),
            "overrides_recipe": overridden,
        },
        curves=curves,
    )


def training_metadata(trained: Mapping[str, TrackedVariant], curves_file: Path) -> dict[str, dg.MetadataValue]:
    """trained_generator's metadata: each variant's summary, and the training curves of this
    materialisation (drawn into `curves_file`; none when every variant was trained before)."""
    metadata = {"variants": dg.MetadataValue.json({name: variant.summary for name, variant in trained.items()})}
    curves = {name: variant.curves for name, variant in trained.items()}
    if any(points for series in curves.values() for points in series.values()):
        metadata["curves"] = png_markdown(save_training_curves(curves, curves_file))
    return metadata


def _metric_histories(run: RunHandle) -> dict[str, list[tuple[int, float]]]:
    """The variant run's logged training curves (this materialisation's steps; a resumed run's
    earlier steps live in the run that was interrupted)."""
    return {
        key: [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, key)]
        for key in CURVE_KEYS
    }


def record_trained_profiles(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, profiles: pl.DataFrame,
    fresh: Mapping[str, int], user_examples: pl.DataFrame, cleaned_items: pl.DataFrame,
    zero_shot_profiles: pl.DataFrame,
) -> None:
    """trained_profiles: each variant's mean length and share finished, as <variant>.<metric>,
    and how many profiles each writing variant generated or reused."""
    for name, generated in fresh.items():
        rows = profiles.filter(pl.col("variant") == name).height
        context.log.info(f"{name}: {generated} profiles generated, {rows - generated} reused")
    per_variant = profiles.group_by("variant").agg(
        pl.col("num_tokens").mean().alias("mean_tokens"), pl.col("finished").mean().alias("share_finished_at_end_of_turn")
    ).sort("variant")
    with mlflow.asset_run(context, recipe, "trained_profiles") as run:
        run.log_metrics({
            f"{row['variant']}.{column}": value
            for row in per_variant.iter_rows(named=True) for column, value in row.items() if column != "variant"
        })
        log_tables(run, [
            *example_splits(user_examples, [recipe.evaluation.split]),
            *read_tables(cleaned_items=cleaned_items, zero_shot_profiles=zero_shot_profiles),
            *written([TrackedTable("trained_profiles", profiles, "trained_generator", "profiles")]),
        ])
    context.add_output_metadata(
        {"per_variant": frame_preview(per_variant), "preview": frame_preview(profiles), "mlflow_run": mlflow.link(run)}
    )


def record_trained_indexes(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, trained: TrainedIndexes,
    built: Mapping[str, CatalogIndex], item_catalog: pl.DataFrame,
) -> None:
    """trained_item_index: each variant's encoding time and index size, as <variant>.<metric>."""
    metrics = {}
    for name, index in built.items():
        metrics.update({f"{name}.encode_seconds": index.encode_seconds, f"{name}.items": index.items})
        context.log.info(f"{name}: indexed {index.items} items")
    with mlflow.asset_run(context, recipe, "trained_item_index") as run:
        run.log_metrics(metrics)
        log_tables(run, [catalog_table(item_catalog)])
    context.add_output_metadata(
        {"variants": dg.MetadataValue.json(fields_json(trained)["variants"]), "mlflow_run": mlflow.link(run)}
    )
