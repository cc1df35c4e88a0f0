"""What the two reports record: their tables, plots and files, and every row's metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import dagster as dg
import polars as pl

from lpt_core.config import Recipe
from lpt_core.evaluation import EvaluationTables
from lpt_core.profile_quality.report import QualityReport, plot_quality
from lpt_core.report import EvaluationReport
from lpt_core.tracking import RunHandle
from lpt_dagster.lineage import (
    EXAMPLES_ASSET,
    TrackedTable,
    catalog_table,
    example_splits,
    log_tables,
    profile_tables,
    read_tables,
)
from lpt_dagster.metadata import figure_markdown, png_markdown
from lpt_dagster.resources import MlflowResource


def record_evaluation_report(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, report: EvaluationReport,
    files: Mapping[str, Path], tables: EvaluationTables,
) -> None:
    """evaluation_report: its table, plot and size, every row's metrics and its files."""
    context.log.info("evaluation report:\n%s", report.table_markdown)
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
            # Ranked rows: examples x their targets (evaluation.targets_per_window)
            "rows": report.numbers["n_examples"],
            "users": examples["user_id"].n_unique(),
            "report_folder": dg.MetadataValue.path(str(files["json"].parent)),
            "mlflow_run": mlflow.link(run),
        }
    )


def record_quality_report(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, report: QualityReport,
    files: Mapping[str, Path], examples: pl.DataFrame, item_catalog: pl.DataFrame, zero_shot_profiles: pl.DataFrame,
    trained_profiles: pl.DataFrame,
) -> None:
    """profile_quality_report: its table, plot, genre samples and size, every variant's scores and
    its files; `examples` are the assessed rows."""
    context.log.info("profile quality report:\n%s", report.markdown())
    read = [
        TrackedTable("assessed_examples", examples, EXAMPLES_ASSET, recipe.evaluation.split),
        catalog_table(item_catalog),
        *profile_tables({"zero_shot_profiles": zero_shot_profiles, "trained_profiles": trained_profiles}),
    ]
    run = _log_report(context, mlflow, recipe, "profile_quality_report", report.flat_metrics(), files, read)
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
