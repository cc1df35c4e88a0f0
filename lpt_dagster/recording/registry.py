"""What registered_model and its gate record: the version's lineage, and the gate's decision."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import polars as pl

from lpt_core.config import Recipe
from lpt_core.serving.pyfunc_model import ServableParts
from lpt_core.serving.registry import GateDecision, Lineage
from lpt_core.tracking import RunHandle
from lpt_dagster.lineage import catalog_table, example_splits, log_tables, profile_tables, read_tables
from lpt_dagster.resources import MlflowResource
from lpt_dagster.values import RegisteredModel, TrainedGenerator


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


def gate_check_result(decision: GateDecision) -> dg.AssetCheckResult:
    """beats_champion's result: the gate's decision, its reason and the numbers it decided on."""
    numbers = {
        "promoted": decision.promoted,
        "challenger_version": decision.challenger_version,
        "champion_version": decision.champion_version or "none",
        "users": decision.n_users,
    }
    if decision.difference is not None:
        numbers.update({
            "metric": decision.metric,
            "challenger_mean": decision.challenger.mean,
            "champion_mean": decision.champion.mean,
            "difference": decision.difference.mean,
            "difference_low": decision.difference.low,
            "difference_high": decision.difference.high,
        })
    # A challenger that does not win is a decision, not a failure: WARN marks the check failed in
    # the UI without failing the run (nothing is downstream of the registry to hold back).
    return dg.AssetCheckResult(
        passed=decision.promoted,
        severity=dg.AssetCheckSeverity.WARN,
        description=decision.reason,
        metadata={**numbers, "decision": dg.MetadataValue.json(decision.as_dict())},
    )
