"""Dagster resources: the recipe a run uses, the workspace it reads and writes, and MLflow tracking.
All are swappable per environment."""


import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from lpt_core.config import Recipe, RecipeError, load_recipe, read_yaml
from lpt_core.paths import Outputs
from lpt_core.tracking import STEP_TAG, RunHandle, Tracker, mlflow_ui_url
from lpt_dagster.failures import user_errors_as_failures


class RecipeResource(dg.ConfigurableResource):
    """Which experiment recipe (configs/<name>.yaml or a path) a run uses, plus optional overrides.

    `overrides` is YAML text merged over the file, e.g. "generation: {max_new_tokens: 64}", so a
    one-off change needs neither a code edit nor a new recipe file.
    """

    name: str = "quick"
    overrides: str = ""

    def get(self) -> Recipe:
        with user_errors_as_failures():
            overrides = read_yaml(self.overrides) if self.overrides.strip() else {}
            if not isinstance(overrides, dict):
                raise RecipeError(f"recipe overrides must be a YAML mapping, got: {self.overrides!r}")
            return load_recipe(self.name, overrides)


class WorkspaceResource(dg.ConfigurableResource):
    """The outputs folder a run reads and writes: the values the IO manager stores and every file an
    asset writes beside them (indexes, models, checkpoints, reports, the profile store), laid out by
    lpt_core.paths.Outputs. One root, so pointing a run (or a test) elsewhere is one setting.

    `root` None means the work folder's outputs/ ($LPT_HOME/outputs, lpt_core.paths.outputs_dir).
    """

    root: str | None = None

    @property
    def outputs(self) -> Outputs:
        return Outputs(Path(self.root)) if self.root else Outputs.default()


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking through a client (no global fluent state): one parent run per Dagster run,
    one child run per asset. tracking_uri None means $MLFLOW_TRACKING_URI, else the sqlite store in
    the work folder; ui_url None means $LPT_MLFLOW_UI_URL, else the tracking server, else the local UI."""

    tracking_uri: str | None = None
    experiment: str = "langptune"
    ui_url: str | None = None
    _tracker: Tracker | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._tracker = Tracker(tracking_uri=self.tracking_uri, experiment=self.experiment)

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:  # used outside a Dagster run (tests, scripts)
            self._tracker = Tracker(tracking_uri=self.tracking_uri, experiment=self.experiment)
        return self._tracker

    @contextlib.contextmanager
    def asset_run(self, context: dg.AssetExecutionContext, recipe: Recipe, name: str) -> Iterator[RunHandle]:
        """The child run of asset `name` under this Dagster run's parent; params = the recipe."""
        parent = self.tracker.parent_run(
            context.run_id,
            name=f"{context.job_name or 'dagster'}:{context.run_id[:8]}",
            tags={"lpt.recipe": recipe.name, "lpt.recipe_hash": recipe.content_hash()},
        )
        # The parent is closed after every step with that step's outcome, so once the Dagster run
        # ends it reads FINISHED or FAILED with no run-end hook (none fires under `job execute`).
        failed = True
        try:
            with self.tracker.child_run(parent, name) as run:
                run.log_params(recipe.model_dump(mode="json"))
                run.set_tags(
                    {"lpt.recipe": recipe.name, "lpt.recipe_hash": recipe.content_hash(), STEP_TAG: context.op_def.name}
                )
                yield run
            failed = False
        finally:
            self.tracker.end_run(parent, failed=failed)

    def run_url(self, run: RunHandle) -> str:
        """Where `run` opens in the MLflow UI."""
        return run.url(self.ui_url or mlflow_ui_url(self.tracker.tracking_uri))

    def link(self, run: RunHandle) -> dg.MetadataValue:
        """A clickable link from the asset's metadata to its MLflow run."""
        return dg.MetadataValue.url(self.run_url(run))
