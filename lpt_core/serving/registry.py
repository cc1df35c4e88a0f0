"""The model registry flow: register a challenger with its lineage, gate it against the champion.

Every registered version of the model carries tags saying where it came from (orchestration run,
recipe hash, data digests, training checkpoint, MLflow runs) and how it scored, and gets the alias
`challenger`. The gate scores the challenger and the current `champion` THROUGH THEIR SERVED
INTERFACE (the pyfunc models, history in, top-k out) on the same evaluation users, and moves
`champion` only on a significant win: the paired bootstrap interval of the NDCG@10 difference
(challenger - champion) lies above zero. With no champion yet, the challenger becomes champion.

All calls go through an MlflowClient bound to explicit tracking and registry URIs, never through
MLflow's process-wide fluent state.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from lpt_core.metrics import Interval, paired_bootstrap

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracking import MlflowClient

    from lpt_core.serving.pyfunc_model import ServableParts

MODEL_NAME = "langptune"
CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_ARTIFACT_PATH = "model"
GATE_K = 10
GATE_METRIC = f"ndcg@{GATE_K}"


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from, down to the exact data, profiles and checkpoint; stored
    as tags on the version.

    `data_digests` names each table's content digest (lpt_core.tracking.frame_digest) under the
    name of the MLflow dataset it was logged as, so a digest finds every run that wrote or read
    the table. `checkpoint` is the training checkpoint folder the model's weights come from and
    `training_hash` the training settings it was made under; `training_run_id` is the MLflow run
    the variant trained in, `registering_run_id` the one the model is logged to and registered
    from. `metrics` is its evaluation."""

    orchestration_run_id: str
    recipe_hash: str
    variant: str
    training_hash: str
    checkpoint: str
    training_run_id: str
    registering_run_id: str
    data_digests: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        from lpt_core.tracking import ORCHESTRATION_RUN_TAG, mlflow_metric_name

        tags = {
            ORCHESTRATION_RUN_TAG: self.orchestration_run_id,
            "lpt.recipe_hash": self.recipe_hash,
            "lpt.variant": self.variant,
            "lpt.training_hash": self.training_hash,
            "lpt.checkpoint": self.checkpoint,
            "lpt.mlflow_run.training": self.training_run_id,
            "lpt.mlflow_run.registering": self.registering_run_id,
        }
        tags.update({f"lpt.data_digest.{name}": digest for name, digest in self.data_digests.items()})
        tags.update({f"lpt.metric.{mlflow_metric_name(k)}": f"{v:.6g}" for k, v in self.metrics.items()})
        return tags


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why, with the numbers it decided on."""

    model_name: str
    challenger_version: str
    champion_version: str | None  # the champion the challenger was compared with, if any
    promoted: bool
    reason: str
    metric: str = GATE_METRIC
    n_users: int = 0
    challenger: Interval | None = None
    champion: Interval | None = None
    difference: Interval | None = None  # challenger - champion

    def as_dict(self) -> dict:
        return asdict(self)


def register_challenger(
    client: MlflowClient,
    model_dir: Path,
    lineage: Lineage,
    model_name: str = MODEL_NAME,
) -> ModelVersion:
    """Log the pyfunc model folder `model_dir` into the run `lineage.registering_run_id` (under
    "model"), register it as a new version of `model_name` with `lineage`'s tags, and point the
    `challenger` alias at it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    if not (Path(model_dir) / "MLmodel").is_file():
        raise FileNotFoundError(f"{model_dir}: no MLmodel file (not an MLflow model folder)")
    run_id = lineage.registering_run_id
    client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
    try:
        client.create_registered_model(model_name, description="LangPTune: history -> editable profile -> top-k items")
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
    version = client.create_model_version(
        model_name, source, run_id=run_id, tags=lineage.tags(),
        description=f"variant {lineage.variant}, orchestration run {lineage.orchestration_run_id}",
    )
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return version


def register_servable(
    client: MlflowClient,
    parts: ServableParts,
    lineage: Lineage,
    model_name: str = MODEL_NAME,
    version_tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Save `parts` as one self-contained pyfunc model and register it as the challenger with its
    lineage (`register_challenger`); `version_tags` (the profile quality report's key numbers)
    travel with the version too."""
    from lpt_core.serving.pyfunc_model import save_servable_model

    with tempfile.TemporaryDirectory(prefix="lpt-registered-model-") as scratch:
        model_dir = save_servable_model(parts, Path(scratch) / "model")
        version = register_challenger(client, model_dir, lineage, model_name)
    for key, value in (version_tags or {}).items():
        client.set_model_version_tag(version.name, version.version, key, value)
    return version


def current_champion(client: MlflowClient, model_name: str = MODEL_NAME) -> str | None:
    """The version the `champion` alias points at, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def gate_challenger(
    client: MlflowClient,
    version: str | int,
    examples: pl.DataFrame,
    *,
    model_name: str = MODEL_NAME,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateDecision:
    """Compare version `version` with the champion on `examples` (EXAMPLES rows: user_id,
    history_item_ids, history_ratings, target_item_id) and move `champion` to it on a
    significant NDCG@10 win, or when there is no champion. Returns the decision and its numbers."""
    version = str(version)
    champion = current_champion(client, model_name)
    if champion is None:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        return GateDecision(model_name, version, None, True, "no champion yet: the challenger becomes champion")
    if champion == version:
        return GateDecision(model_name, version, champion, True, "the challenger already is the champion")
    challenger_ranks = target_ranks(load_version(client, model_name, version), examples)
    champion_ranks = target_ranks(load_version(client, model_name, champion), examples)
    decision = decide(
        model_name, version, champion, challenger_ranks, champion_ranks, examples["user_id"].to_list(),
        samples=samples, confidence=confidence, seed=seed,
    )
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return decision


def decide(
    model_name: str,
    challenger_version: str,
    champion_version: str,
    challenger_ranks: np.ndarray,
    champion_ranks: np.ndarray,
    user_ids: list[str],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateDecision:
    """The gate's rule on ranks of the same rows: promote when the paired bootstrap interval of
    NDCG@10 (challenger - champion), resampling users, lies entirely above zero."""
    result = paired_bootstrap(
        {CHALLENGER: challenger_ranks, CHAMPION: champion_ranks}, user_ids, ks=(GATE_K,),
        samples=samples, confidence=confidence, seed=seed, baseline=CHAMPION,
    )
    difference = result.differences[f"{CHALLENGER} - {CHAMPION}"][GATE_METRIC]
    promoted = difference.low > 0
    verdict = "significant win" if promoted else "no significant win"
    reason = (
        f"{verdict}: {GATE_METRIC} difference {difference.mean:+.4f}, {confidence:.0%} interval "
        f"[{difference.low:+.4f}, {difference.high:+.4f}] over {result.n_users} users"
    )
    return GateDecision(
        model_name, challenger_version, champion_version, promoted, reason, GATE_METRIC, result.n_users,
        result.methods[CHALLENGER][GATE_METRIC], result.methods[CHAMPION][GATE_METRIC], difference,
    )


def load_version(client: MlflowClient, model_name: str, version: str) -> PyFuncModel:
    """Load a registered version through `client`'s store (not the process-wide tracking URI).

    The download is deleted once loaded: every artifact is read into memory at load time."""
    import mlflow.artifacts
    import mlflow.pyfunc

    source = client.get_model_version_download_uri(model_name, version)
    with tempfile.TemporaryDirectory(prefix=f"lpt-{model_name}-v{version}-") as local:
        path = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=local, tracking_uri=client.tracking_uri)
        return mlflow.pyfunc.load_model(path)


def target_ranks(model: PyFuncModel, examples: pl.DataFrame, k: int = GATE_K) -> np.ndarray:
    """Each row's target rank in the model's top-k for its history; a target outside the top k
    counts as rank k + 1, which every metric at a cutoff <= k scores as a miss."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "history_item_ids": examples["history_item_ids"].to_list(),
            "history_ratings": [None if r is None else [float(x) for x in r] for r in examples["history_ratings"].to_list()],
            "k": [k] * examples.height,
        }
    )
    rows = _rows_per_request(examples["history_item_ids"].list.len().max() or 1)
    answers = pd.concat(
        [model.predict(frame.iloc[start : start + rows]) for start in range(0, len(frame), rows)], ignore_index=True
    )
    ranks = np.full(examples.height, k + 1.0)
    for row, (target, item_ids) in enumerate(zip(examples["target_item_id"].to_list(), answers["item_ids"], strict=True)):
        found = list(item_ids)
        if target in found:
            ranks[row] = found.index(target) + 1.0
    return ranks


def _rows_per_request(longest_history: int) -> int:
    """As many rows as one request to the model takes (its limits on rows and history items)."""
    from lpt_core.serving.pyfunc_model import MAX_HISTORY_ITEMS_PER_REQUEST, MAX_ROWS_PER_REQUEST

    return max(1, min(MAX_ROWS_PER_REQUEST, MAX_HISTORY_ITEMS_PER_REQUEST // longest_history))
