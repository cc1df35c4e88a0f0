"""What baseline_models records: the settings chosen, every trial, and the recipe override that
pins the search's result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from lpt_core.config import Recipe
from lpt_core.recommenders.tuning import SearchResult, Trial, TunedBaselines
from lpt_dagster.lineage import catalog_table, example_splits, log_tables, read_tables
from lpt_dagster.resources import MlflowResource


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
