"""History baselines: SASRec and item-kNN fitted on train users, tuned on val users, saved for the report."""


import dagster as dg
import polars as pl

from lpt_core.recommenders.tuning import BaselineSearch, tune_and_save_baselines
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.recording.baselines import record_baselines, trial_logger
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.values import BaselineModels

GROUP = "baselines"


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
    folder = workspace.outputs.folder("baseline_models")
    tuned = tune_and_save_baselines(
        cleaned_histories, user_examples, item_catalog, search, folder, on_trial=trial_logger(context, search.metric)
    )
    record_baselines(context, mlflow, cfg, tuned, folder, user_examples, cleaned_histories, item_catalog)
    return BaselineModels(
        folder=folder, model_files=tuned.model_files, chosen=tuned.chosen, metric=tuned.metric,
        val_metrics=tuned.val_metrics, tuning_seconds=tuned.seconds,
    )
