"""History baselines: SASRec and item-kNN fitted on train users, tuned on val users, saved for the report."""


import time

import dagster as dg
import polars as pl
import yaml

from lpt_core.recommenders import save_baseline_models
from lpt_core.recommenders.sequences import baseline_data
from lpt_core.recommenders.tuning import BaselineSearch, SearchResult, Trial, pinned_overrides, tune_baselines
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.lineage import catalog_table, example_splits, log_tables, read_tables
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.values import BaselineModels

GROUP = "baselines"


def _trials_markdown(results: dict[str, SearchResult]) -> str:
    lines = ["| method | settings | val metric | seconds |", "|---|---|---:|---:|"]
    for name, result in results.items():
        for trial in result.trials:
            chosen = " (chosen)" if trial.settings == result.settings else ""
            lines.append(f"| {name}{chosen} | {trial.settings} | {trial.metric:.4f} | {trial.seconds:.1f} |")
    return "\n".join(lines)


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def baseline_models(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_histories: pl.DataFrame,
    item_catalog: pl.DataFrame,
) -> BaselineModels:
    """SASRec and item-kNN: trained on train users' sequences, settings chosen on val users
    (the recipe's `baselines` search and budget), saved under outputs/baseline_models/."""
    cfg = recipe.get()
    search = BaselineSearch(**cfg.baselines.model_dump())
    data = baseline_data(cleaned_histories, user_examples, item_catalog["item_id"].to_list())
    trial_count = {"sasrec": 0, "item_knn": 0}

    def log_trial(method: str, trial: Trial) -> None:
        trial_count[method] += 1
        context.log.info(f"{method} trial {trial_count[method]}: {trial.settings} -> val {search.metric} "
                         f"{trial.metric:.4f} ({trial.seconds:.1f} s)")

    started = time.perf_counter()
    results = tune_baselines(data, search, on_trial=log_trial)
    seconds = time.perf_counter() - started
    chosen = {name: result.settings for name, result in results.items()}
    overrides = pinned_overrides(results)
    folder = workspace.outputs.folder("baseline_models")
    files = save_baseline_models(
        folder, {name: result.model for name, result in results.items()}, data.item_ids,
        {"chosen": chosen, "metric": search.metric, "recipe_overrides": overrides},
    )
    val_metrics = {f"{name}.val_{search.metric}": result.metric for name, result in results.items()}
    with mlflow.asset_run(context, cfg, "baseline_models") as run:
        run.log_params({"chosen": chosen})
        run.log_metrics({**val_metrics, "tuning_seconds": seconds,
                         **{f"{name}.trials": len(result.trials) for name, result in results.items()}})
        for name, result in results.items():
            for step, trial in enumerate(result.trials):
                run.log_metrics({f"{name}.trial_val_{search.metric}": trial.metric}, step=step)
        run.log_dict({name: result.summary() for name, result in results.items()}, "baseline_search.json")
        run.log_dict(overrides, "recipe_overrides.yaml")
        log_tables(run, [
            *example_splits(user_examples, ("train", "val")),
            *read_tables(cleaned_histories=cleaned_histories),
            catalog_table(item_catalog),
        ])
    table = _trials_markdown(results)
    context.add_output_metadata(
        {
            **val_metrics,
            "tuning_seconds": seconds,
            "trials": dg.MetadataValue.md(table),
            "recipe_overrides": dg.MetadataValue.md(f"```yaml\n{yaml.safe_dump(overrides)}```"),
            "folder": dg.MetadataValue.path(str(folder)),
            "mlflow_run": mlflow.link(run),
        }
    )
    return BaselineModels(
        folder=folder,
        model_files={name: path for name, path in files.items() if name != "manifest"},
        chosen=chosen,
        metric=search.metric,
        val_metrics={name: result.metric for name, result in results.items()},
        tuning_seconds=seconds,
    )
