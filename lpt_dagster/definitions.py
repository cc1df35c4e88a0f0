"""The Dagster code location: assets, checks, jobs and resources of langptune.

`dg dev` (via `make ui`) and `dg launch` (via `make demo`) load this module, named in pyproject.toml
([tool.dg.project]); workspace.yaml names it for `dagster-webserver` and the Docker image.
The recipe is chosen at launch (Launchpad: resources.recipe.config.name) or by $LPT_RECIPE.
"""

from __future__ import annotations

import os

import dagster as dg

from lpt_dagster.assets import baselines, data, evaluation, profiles, quality, registry, training
from lpt_dagster.automation import new_raw_data_sensor, pipeline_job, retrain_job, weekly_retrain_schedule
from lpt_dagster.checks import data_quality_checks
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource

all_assets = dg.load_assets_from_modules([data, profiles, baselines, training, evaluation, quality, registry])
all_checks = [*data_quality_checks, registry.beats_champion]
# One outputs folder for the assets' own files and the values the IO manager stores.
workspace = WorkspaceResource()

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[pipeline_job, retrain_job],
    schedules=[weekly_retrain_schedule],
    sensors=[new_raw_data_sensor],
    resources={
        "recipe": RecipeResource(name=os.environ.get("LPT_RECIPE", "quick")),
        "mlflow": MlflowResource(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")),
        "workspace": workspace,
        "io_manager": LocalFilesIOManager(workspace=workspace),
    },
)
