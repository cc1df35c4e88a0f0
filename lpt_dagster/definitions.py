"""The Dagster code location: assets, checks, jobs and resources of langptune.

`dagster dev` (via `make ui`) loads this module; so does `dagster job execute` (via `make demo`).
The recipe is chosen at launch (Launchpad: resources.recipe.config.name) or by $LPT_RECIPE.
"""

from __future__ import annotations

import os

import dagster as dg

from lpt_dagster.assets import baselines, data, evaluation, profiles, training
from lpt_dagster.checks import data_quality_checks
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import MlflowResource, RecipeResource

all_assets = dg.load_assets_from_modules([data, profiles, baselines, training, evaluation])

# One process for the whole run: every step imports torch/transformers, and on a small machine
# re-importing them in a subprocess per step costs more than the parallelism gains.
pipeline_job = dg.define_asset_job(
    "langptune_pipeline",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Raw data to evaluation report for the chosen recipe.",
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=data_quality_checks,
    jobs=[pipeline_job],
    resources={
        "recipe": RecipeResource(name=os.environ.get("LPT_RECIPE", "quick")),
        "mlflow": MlflowResource(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")),
        "io_manager": LocalFilesIOManager(),
    },
)
