"""Experiment tracking in MLflow: one parent run per orchestration run, one child run per asset.

Everything goes through an `MlflowClient` bound to an explicit tracking URI, never the fluent
`mlflow.*` API: its active run and tracking URI are process-wide globals, which breaks as soon as
two assets log from threads of one process or a test points MLflow somewhere else.

Runs are found again by tags rather than remembered, so re-materialising an asset inside the same
orchestration run reuses its child run, and a new orchestration run gets a new parent: repeated
materialisations never leave a tangle of orphan runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from lpt_core import paths

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

ORCHESTRATION_RUN_TAG = "lpt.orchestration_run_id"
ASSET_TAG = "lpt.asset"
STEP_TAG = "lpt.dagster_step"  # the Dagster step (op) a child run belongs to
# A logged dataset's tag: "input" if the run read it, "output" if it wrote it.
DATASET_ROLE_TAG = "lpt.dataset_role"
DatasetRole = Literal["input", "output"]
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag: its UI nests children under it
DEFAULT_UI_URL = "http://127.0.0.1:5000"
# Where to track is the environment's choice, so one configuration serves a laptop and a cluster.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
ARTIFACT_ROOT_ENV = "LPT_MLFLOW_ARTIFACT_ROOT"
UI_URL_ENV = "LPT_MLFLOW_UI_URL"
# Tracking URIs served by an MLflow server, which decides where artifacts go.
_SERVER_SCHEMES = ("http://", "https://", "databricks")

# MLflow's limits (mlflow.utils.validation), restated so importing this module stays cheap.
MAX_PARAM_VALUE_LENGTH = 6000
_INVALID_METRIC_CHARACTERS = re.compile(r"[^\w./\- ]")  # colons too: Windows rejects them


def default_tracking_uri() -> str:
    """The sqlite store in the project's work folder."""
    return f"sqlite:///{paths.mlflow_dir() / 'mlflow.db'}"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """`tracking_uri`, else $MLFLOW_TRACKING_URI, else the sqlite store in the work folder."""
    return tracking_uri or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()


def default_artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts, as a URI; None lets a tracking server decide.

    $LPT_MLFLOW_ARTIFACT_ROOT (a folder or a URI such as s3://bucket/langptune) wins. Otherwise
    artifacts go beside a sqlite store, or, for another database used without a server
    (postgresql://...), under the work folder: MLflow's own default there is ./mlruns in whatever
    folder the process started in, a different place on every machine.
    """
    configured = os.environ.get(ARTIFACT_ROOT_ENV)
    if configured:
        return _location_uri(configured)
    if tracking_uri.startswith(_SERVER_SCHEMES):
        return None
    sqlite_root = _sqlite_artifact_root(tracking_uri)
    if sqlite_root is not None:
        return sqlite_root.resolve().as_uri()
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):
        return None  # a local file store keeps artifacts inside itself
    return (paths.mlflow_dir() / "artifacts").resolve().as_uri()  # a SQLAlchemy database URI


def mlflow_ui_url(tracking_uri: str) -> str:
    """Where people open the MLflow UI: $LPT_MLFLOW_UI_URL, else the tracking server itself,
    else the local UI of `make ui`."""
    configured = os.environ.get(UI_URL_ENV)
    if configured:
        return configured
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri
    return DEFAULT_UI_URL


def _location_uri(location: str | Path) -> str:
    """A folder as a file:// URI; a string that already is a URI (s3://, gs://, file://) as given."""
    if isinstance(location, str) and "://" in location:
        return location
    return Path(location).expanduser().resolve().as_uri()


def mlflow_metric_name(name: str) -> str:
    """The name a metric is logged under: MLflow rejects '@', so "ndcg@10" becomes "ndcg_at_10";
    any other character MLflow does not allow becomes '_'."""
    return _INVALID_METRIC_CHARACTERS.sub("_", name.replace("@", "_at_"))


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys ("data.k_core"); values become text, cut to fit MLflow."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_VALUE_LENGTH]
    return flat


def frame_digest(frame: pl.DataFrame) -> str:
    """A content hash of a frame: equal for frames with the same schema and rows (in any order),
    different after any one-cell change. Computed by polars without copying the data out.

    polars documents `hash_rows` as stable only within one polars version, so the version is part
    of the hash: an upgrade changes digests (a cache miss), never makes two contents collide.
    """
    row_hash_sum = int(frame.hash_rows().sum()) if frame.width else 0
    identity = f"{pl.__version__}|{frame.schema}|{frame.height}|{row_hash_sum}"
    # 32 hex characters: MLflow stores dataset digests in a 36-character column.
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def _filter_literal(value: str, argument: str) -> str:
    """A value quoted for an MLflow search filter, which has no escape for a single quote."""
    if "'" in value:
        raise ValueError(f"{argument} must not contain a single quote: {value!r}")
    return f"'{value}'"


def _sqlite_artifact_root(tracking_uri: str) -> Path | None:
    """Artifacts beside a sqlite store (MLflow's default is ./mlruns in the working folder)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return Path(tracking_uri[len(prefix) :]).parent / "artifacts"


class Tracker:
    """Finds or creates the runs of one MLflow experiment."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "langptune",
        artifact_root: str | Path | None = None,
    ) -> None:
        """`tracking_uri` None means $MLFLOW_TRACKING_URI, else the sqlite store in the work
        folder. `artifact_root` (a folder or a URI) applies only when the experiment is created;
        None means `default_artifact_root`."""
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient

        tracking_uri = resolve_tracking_uri(tracking_uri)
        sqlite_root = _sqlite_artifact_root(tracking_uri)
        if sqlite_root is not None:  # MLflow does not create the database's folder
            sqlite_root.parent.mkdir(parents=True, exist_ok=True)
        location = (
            _location_uri(artifact_root) if artifact_root is not None else default_artifact_root(tracking_uri)
        )
        self.tracking_uri = tracking_uri
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id: str = self._experiment_id(experiment, location)

    def _experiment_id(self, name: str, location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            if existing.lifecycle_stage == "deleted":  # deleted in the UI: a run brings it back
                self.client.restore_experiment(existing.experiment_id)
            return existing.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # Another process created it between our look-up and our create.
            created = self.client.get_experiment_by_name(name)
            if created is None:
                raise
            return created.experiment_id

    def parent_run(
        self, orchestration_run_id: str, name: str, tags: Mapping[str, str] | None = None
    ) -> str:
        """The one MLflow run of this orchestration (e.g. Dagster) run, created on first call."""
        literal = _filter_literal(orchestration_run_id, "orchestration_run_id")
        return self._find_or_create(
            f"tags.`{ORCHESTRATION_RUN_TAG}` = {literal}",
            run_name=name,
            tags={**(tags or {}), ORCHESTRATION_RUN_TAG: orchestration_run_id},
        )

    def child_run(
        self, parent_run_id: str, asset_key: str, tags: Mapping[str, str] | None = None
    ) -> RunHandle:
        """The run of one asset under `parent_run_id`, created on first call, reused after."""
        parent = _filter_literal(parent_run_id, "parent_run_id")
        asset = _filter_literal(asset_key, "asset_key")
        run_id = self._find_or_create(
            f"tags.`{PARENT_RUN_TAG}` = {parent} AND tags.`{ASSET_TAG}` = {asset}",
            run_name=asset_key,
            tags={**(tags or {}), PARENT_RUN_TAG: parent_run_id, ASSET_TAG: asset_key},
        )
        return RunHandle(self.client, run_id, self.experiment_id)

    def end_run(self, run_id: str, failed: bool = False) -> None:
        """Mark a run (typically a parent, which no context manager closes) as ended."""
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def run_url(self, run_id: str, ui_url: str = DEFAULT_UI_URL) -> str:
        """A link to the run in the MLflow UI served at `ui_url`."""
        return _run_url(ui_url, self.experiment_id, run_id)

    def _find_or_create(self, filter_string: str, run_name: str, tags: dict[str, str]) -> str:
        found = self._oldest_match(filter_string)
        if found is not None:
            _log_tags(self.client, found, tags)
            return found
        created_run = self.client.create_run(self.experiment_id, tags=tags, run_name=run_name)
        created = created_run.info.run_id
        # Two processes of one orchestration run can both miss and both create: all of them then
        # settle on the oldest match, and a process whose run lost deletes it.
        winner = self._oldest_match(filter_string) or created
        if winner != created:
            self.client.delete_run(created)
            _log_tags(self.client, winner, tags)
        return winner

    def _oldest_match(self, filter_string: str) -> str | None:
        runs: list[Run] = self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=100
        )
        if not runs:
            return None
        return min(runs, key=lambda run: (run.info.start_time, run.info.run_id)).info.run_id


def _log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


class RunHandle:
    """Logs to one run. As a context manager it marks the run RUNNING on entry, and on exit
    FINISHED, FAILED (an exception), or KILLED (an interrupt, e.g. a cancelled orchestration run).
    """

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def __enter__(self) -> RunHandle:
        self.client.update_run(self.run_id, status="RUNNING")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, Exception):
            status = "FAILED"
        else:
            status = "KILLED"
        self.client.set_terminated(self.run_id, status=status)

    def url(self, ui_url: str = DEFAULT_UI_URL) -> str:
        """A link to this run in the MLflow UI served at `ui_url`."""
        return _run_url(ui_url, self.experiment_id, self.run_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log nested params flattened to dotted keys, values cut to MLflow's length limit.

        MLflow params are write-once: logging a key again with a different value raises.
        """
        from mlflow.entities import Param

        flat = flatten_params(params)
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics in one batch, under `mlflow_metric_name` of each key ("ndcg@10" ->
        "ndcg_at_10")."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = [
            Metric(mlflow_metric_name(key), float(value), timestamp, step or 0)
            for key, value in metrics.items()
        ]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file, or a folder's contents, into the run's artifacts under `artifact_path`."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder to log as an artifact")

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Log as JSON, or YAML when `artifact_file` ends in .yaml/.yml."""
        self.client.log_dict(self.run_id, dict(dictionary), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib (or plotly) figure as an image file."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_dataset(
        self,
        frame: pl.DataFrame,
        name: str,
        source: str,
        context: str,
        digest: str | None = None,
        role: DatasetRole = "input",
    ) -> None:
        """Record `frame` as a dataset of this run (lineage): its name, digest, schema and size.

        `source` is where it came from: a path, a URL, or an upstream asset's name. `context` is
        its use ("train", "catalog", ...); `role` (tag DATASET_ROLE_TAG) says whether the run
        read it or wrote it: MLflow records every dataset as a run input. No copy of the data
        is made or uploaded.
        """
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():
            # MLflow registers plain paths and file:// under two equivalent local sources and
            # warns about the tie on every call; either reads the same.
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            try:
                dataset = mlflow.data.from_polars(
                    frame, source=source, name=name, digest=digest or frame_digest(frame)
                )
            except MlflowException as error:
                raise ValueError(f"log_dataset source {source!r}: {error.message}") from error
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag(DATASET_ROLE_TAG, role)]
        inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=tags)]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        _log_tags(self.client, self.run_id, tags)
