"""What an asset records beside its value: its MLflow child run (the tables it read and wrote, its
metrics and files) and the metadata a person reads in the Dagster UI. One function per kind of
value, so that an asset body reads as its inputs, one lpt_core call and its value.

The metric, artifact and metadata names here are the ones the tests, the docs and MLflow
searches rely on: renaming one is a change of interface, not a refactoring.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import yaml

from lpt_core.catalog_index import CatalogIndex
from lpt_core.config import Recipe
from lpt_core.data.preparation import CleanedData, SplitData
from lpt_core.data.readers import TIMESTAMP_UNITS, RawData
from lpt_core.evaluation import EvaluationTables
from lpt_core.paths import resolve_repo_path
from lpt_core.profile_quality.report import QualityReport, plot_quality
from lpt_core.recommenders.tuning import SearchResult, Trial, TunedBaselines
from lpt_core.report import EvaluationReport
from lpt_core.serving.pyfunc_model import ServableParts
from lpt_core.serving.registry import Lineage
from lpt_core.tracking import RunHandle, frame_digest
from lpt_core.training.alternation import TrainingCallbacks, TrainingResult
from lpt_core.training.curves import CURVE_KEYS, save_training_curves
from lpt_core.training.variants import get_variant
from lpt_dagster.lineage import (
    TrackedTable,
    catalog_table,
    example_splits,
    log_tables,
    profile_tables,
    read_tables,
    written,
)
from lpt_dagster.metadata import figure_markdown, frame_preview, histogram_figure, png_markdown
from lpt_dagster.resources import MlflowResource
from lpt_dagster.values import (
    ItemIndexInfo,
    RegisteredModel,
    TrainedGenerator,
    TrainedIndexes,
    TrainedRecommender,
    fields_json,
)


def record_raw_data(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, raw: RawData
) -> tuple[dict, dict]:
    """raw_data: the tables read and where every input row went; returns the metadata of
    raw_interactions and of raw_items."""
    source = str(resolve_repo_path(recipe.data.path))
    accounting = _accounting(raw)
    for account in raw.accounts:
        if account.skipped or account.nulled:
            context.log.warning(
                "%s: skipped %s; optional values read as null %s", account.file, account.skipped, account.nulled
            )
    with mlflow.asset_run(context, recipe, "raw_data") as run:
        log_tables(run, written([TrackedTable("raw_interactions", raw.interactions, source, "raw"),
                                 TrackedTable("raw_items", raw.items, source, "raw")]))
        run.log_metrics({"raw_interactions": raw.interactions.height, **accounting})
    interactions = {
        **_table_stats(raw.interactions), **accounting,
        "input_accounts": dg.MetadataValue.json([dataclasses.asdict(a) for a in raw.accounts]),
        "quarantine_preview": frame_preview(raw.quarantine), "source": source,
        "digest": frame_digest(raw.interactions), "preview": frame_preview(raw.interactions),
        "mlflow_run": mlflow.link(run),
    }
    items = {"rows": raw.items.height, "digest": frame_digest(raw.items), "preview": frame_preview(raw.items)}
    return interactions, items


def record_cleaned_data(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, raw: RawData, cleaned: CleanedData
) -> tuple[dict, dict]:
    """cleaned_data: the tables read and written and the cleaning report; returns the metadata of
    cleaned_histories and of cleaned_items."""
    interactions, items, report = cleaned.interactions, cleaned.items, cleaned.report
    with mlflow.asset_run(context, recipe, "cleaned_histories") as run:
        log_tables(run, [
            *read_tables(raw_interactions=raw.interactions, raw_items=raw.items),
            *written([TrackedTable("cleaned_histories", interactions, "raw_interactions", "cleaned"),
                      TrackedTable("cleaned_items", items, "raw_items", "cleaned")]),
        ])
        run.log_metrics({"cleaned_interactions": interactions.height, "cleaned_items": items.height})
        run.log_text(report.to_markdown(), "cleaning_report.md")
    per_user = interactions.group_by("user_id").len()["len"]
    histories = {
        **_table_stats(interactions),
        "cleaning_steps": dg.MetadataValue.md(report.to_markdown()),
        "interactions_per_user": figure_markdown(
            histogram_figure(per_user, "Interactions per user after cleaning", "interactions")
        ),
        "digest": frame_digest(interactions),
        "preview": frame_preview(interactions),
        "mlflow_run": mlflow.link(run),
    }
    return histories, {"rows": items.height, "preview": frame_preview(items)}


def record_split(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, cleaned_histories: pl.DataFrame,
    cleaned_items: pl.DataFrame, prepared: SplitData,
) -> tuple[dict, dict]:
    """split_data: the tables read and written and the split's statistics; returns the metadata
    of user_examples and of item_catalog."""
    examples, catalog, too_long = prepared.examples, prepared.catalog, prepared.prompts_too_long
    stats = prepared.split.stats()
    context.log.info("split statistics: %s", stats)
    with mlflow.asset_run(context, recipe, "user_examples") as run:
        log_tables(run, [
            *read_tables(cleaned_histories=cleaned_histories, cleaned_items=cleaned_items),
            *written([*example_splits(examples, source="cleaned_histories"),
                      catalog_table(catalog, source="cleaned_items")]),
        ])
        run.log_dict(stats, "split_stats.json")
        run.log_metrics({"prompts_too_long": too_long, "catalog_items": catalog.height})
    history_lengths = examples["history_item_ids"].list.len()
    examples_metadata = {
        "split_stats": dg.MetadataValue.json(stats),
        "prompts_too_long_dropped": too_long,
        "history_length": figure_markdown(histogram_figure(history_lengths, "History length", "items")),
        "preview": frame_preview(examples),
        "mlflow_run": mlflow.link(run),
    }
    return examples_metadata, {"items": catalog.height, "preview": frame_preview(catalog)}


def _table_stats(frame: pl.DataFrame) -> dict[str, int]:
    return {
        "rows": frame.height,
        "users": frame["user_id"].n_unique() if "user_id" in frame.columns else 0,
        "items": frame["item_id"].n_unique() if "item_id" in frame.columns else 0,
    }


def _accounting(raw: RawData) -> dict[str, int]:
    """Totals over the input files: every row read is kept, quarantined or skipped."""
    return {
        "input_rows": sum(a.rows for a in raw.accounts),
        "quarantined_rows": sum(a.quarantined for a in raw.accounts),
        "skipped_rows": sum(sum(a.skipped.values()) for a in raw.accounts),
        "optional_values_read_as_null": sum(sum(a.nulled.values()) for a in raw.accounts),
        **{
            f"timestamps_read_as_{unit}": sum(a.timestamp_units.get(unit, 0) for a in raw.accounts)
            for unit in TIMESTAMP_UNITS
        },
    }



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


def trial_logger(context: dg.AssetExecutionContext, metric: str) -> Callable[[str, Trial], None]:
    """Logs each baseline trial as it finishes, numbered per method."""
    counts: dict[str, int] = {}

    def log_trial(method: str, trial: Trial) -> None:
        counts[method] = counts.get(method, 0) + 1
        context.log.info(f"{method} trial {counts[method]}: {trial.settings} -> val {metric} "
                         f"{trial.metric:.4f} ({trial.seconds:.1f} s)")

    return log_trial


def record_baselines(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, tuned: TunedBaselines,
    folder: Path, user_examples: pl.DataFrame, cleaned_histories: pl.DataFrame, item_catalog: pl.DataFrame,
) -> None:
    """baseline_models: the settings chosen, every trial's validation metric (one step per trial),
    the search and the recipe override that pins its result; the tables it fitted and chose on."""
    results, metric = tuned.results, tuned.metric
    val_metrics = {f"{name}.val_{metric}": value for name, value in tuned.val_metrics.items()}
    with mlflow.asset_run(context, recipe, "baseline_models") as run:
        run.log_params({"chosen": tuned.chosen})
        run.log_metrics({**val_metrics, "tuning_seconds": tuned.seconds,
                         **{f"{name}.trials": len(result.trials) for name, result in results.items()}})
        for name, result in results.items():
            for step, trial in enumerate(result.trials):
                run.log_metrics({f"{name}.trial_val_{metric}": trial.metric}, step=step)
        run.log_dict({name: result.summary() for name, result in results.items()}, "baseline_search.json")
        run.log_dict(tuned.overrides, "recipe_overrides.yaml")
        log_tables(run, [
            *example_splits(user_examples, ("train", "val")),
            *read_tables(cleaned_histories=cleaned_histories),
            catalog_table(item_catalog),
        ])
    context.add_output_metadata(
        {
            **val_metrics,
            "tuning_seconds": tuned.seconds,
            "trials": dg.MetadataValue.md(_trials_markdown(results)),
            "recipe_overrides": dg.MetadataValue.md(f"```yaml\n{yaml.safe_dump(tuned.overrides)}```"),
            "folder": dg.MetadataValue.path(str(folder)),
            "mlflow_run": mlflow.link(run),
        }
    )


def _trials_markdown(results: Mapping[str, SearchResult]) -> str:
    lines = ["| method | settings | val metric | seconds |", "|---|---|---:|---:|"]
    for name, result in results.items():
        for trial in result.trials:
            chosen = " (chosen)" if trial.settings == result.settings else ""
            lines.append(f"| {name}{chosen} | {trial.settings} | {trial.metric:.4f} | {trial.seconds:.1f} |")
    return "\n".join(lines)


def record_evaluation_report(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, report: EvaluationReport,
    files: Mapping[str, Path], tables: EvaluationTables,
) -> None:
    """evaluation_report: its table, plot and size, every row's metrics and its files."""
    split = recipe.evaluation.split
    examples = tables.user_examples.filter(pl.col("split") == split)
    read = [
        *example_splits(tables.user_examples, [split]),
        *read_tables(cleaned_histories=tables.cleaned_histories),
        catalog_table(tables.item_catalog),
        *profile_tables({"zero_shot_profiles": tables.zero_shot_profiles, "sampled_profiles": tables.sampled_profiles,
                         "trained_profiles": tables.trained_profiles}),
    ]
    run = _log_report(context, mlflow, recipe, "evaluation_report", report.flat_metrics(), files, read)
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


def record_quality_report(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, report: QualityReport,
    files: Mapping[str, Path], examples: pl.DataFrame, tables: Iterable[TrackedTable],
) -> None:
    """profile_quality_report: its table, plot, genre samples and size, every variant's scores and
    its files."""
    run = _log_report(context, mlflow, recipe, "profile_quality_report", report.flat_metrics(), files, tables)
    context.add_output_metadata({
        "table": dg.MetadataValue.md(report.markdown()),
        "plot": figure_markdown(plot_quality(report.numbers)),
        "genre_samples": dg.MetadataValue.md(files["samples"].read_text(encoding="utf-8")),
        "examples": examples.height,
        "report_folder": dg.MetadataValue.path(str(files["json"].parent)),
        "mlflow_run": mlflow.link(run),
    })


def _log_report(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, asset: str,
    metrics: Mapping[str, float], files: Mapping[str, Path], tables: Iterable[TrackedTable],
) -> RunHandle:
    """A report's run: the tables it read, its flat metrics, and its files under <asset>/."""
    with mlflow.asset_run(context, recipe, asset) as run:
        log_tables(run, tables)
        run.log_metrics(metrics)
        for path in files.values():
            run.log_artifact(path, asset)
    return run


@contextmanager
def registering_run(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, parts: ServableParts,
    training: TrainedGenerator, metrics: Mapping[str, float], user_examples: pl.DataFrame,
    trained_profiles: pl.DataFrame, data: Mapping[str, pl.DataFrame],
) -> Iterator[tuple[RunHandle, Lineage]]:
    """registered_model's run, with registry.variant's metrics and the tables it came from logged,
    and the lineage of the version registered inside it: the digests of those tables, the
    variant's recipe, its training checkpoint and run, and this run.

    The tables: the examples it trained on and was evaluated (and is gated) on, its catalogue (the
    one in `parts`) and profiles, and `data`, the tables the examples were made from, by asset."""
    variant = recipe.registry.variant
    read = [
        *example_splits(user_examples, ("train", "val", recipe.evaluation.split)),
        catalog_table(parts.catalog),
        *profile_tables({"trained_profiles": trained_profiles}),
        *read_tables(**data),
    ]
    with mlflow.asset_run(context, recipe, "registered_model") as run:
        run.set_tags({"lpt.variant": variant})
        run.log_metrics(metrics)
        yield run, Lineage(
            orchestration_run_id=context.run_id,
            recipe_hash=parts.recipe.content_hash(),
            variant=variant,
            training_hash=training.training_hash,
            checkpoint=str(training.checkpoint),
            training_run_id=training.mlflow_run_id,
            registering_run_id=run.run_id,
            data_digests=log_tables(run, read),
            metrics=metrics,
        )


def record_registered_model(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, run: RunHandle, registered: RegisteredModel,
    lineage: Lineage,
) -> None:
    """registered_model: the version's URI, variant, lineage and run."""
    context.add_output_metadata(
        {
            "model_uri": registered.model_uri,
            "variant": registered.variant,
            "lineage": dg.MetadataValue.json(lineage.tags()),
            "mlflow_run": mlflow.link(run),
        }
    )


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
