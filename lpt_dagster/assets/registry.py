"""The served model: the chosen trained variant as one MLflow pyfunc model, registered with its
lineage as the `challenger`, and the blocking check that makes it `champion` only on a win."""

import dagster as dg
import polars as pl

from lpt_core.serving.pyfunc_model import ServableParts
from lpt_core.serving.registry import gate_challenger, register_servable
from lpt_core.training.variants import get_variant
from lpt_dagster.recording.registry import gate_check_result, record_registered_model, registering_run
from lpt_dagster.resources import MlflowResource, RecipeResource
from lpt_dagster.values import (
    EvaluationReport,
    QualityReport,
    RegisteredModel,
    TrainedGenerators,
    TrainedIndexes,
    TrainedRecommenders,
)

GROUP = "registry"


@dg.asset(group_name=GROUP)
def registered_model(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    trained_generator: TrainedGenerators,
    trained_recommender: TrainedRecommenders,
    trained_item_index: TrainedIndexes,
    trained_profiles: pl.DataFrame,
    raw_interactions: pl.DataFrame,
    raw_items: pl.DataFrame,
    cleaned_histories: pl.DataFrame,
    item_catalog: pl.DataFrame,
    user_examples: pl.DataFrame,
    evaluation_report: EvaluationReport,
    profile_quality_report: QualityReport,
) -> RegisteredModel:
    """The recipe's `registry.variant` as one self-contained pyfunc model (generator + adapter,
    recommender, item index, catalogue), logged to MLflow and registered as a new version of
    `registry.model_name` with its lineage, under the alias `challenger`.

    The lineage names the digests of the tables the variant came from (raw and cleaned data, the
    examples it trained on and was evaluated on, the catalogue, the trained profiles), its training
    checkpoint and hash, and the MLflow runs that trained and registered it."""
    cfg = recipe.get()
    variant = cfg.registry.variant
    if variant not in trained_generator.variants:
        raise ValueError(
            f"registry.variant {variant!r} was not trained (training.variants: {sorted(trained_generator.variants)})"
        )
    training = trained_generator[variant]
    parts = ServableParts(
        recipe=get_variant(variant).recipe_for(cfg),
        adapter_dir=training.adapter_dir,
        encoder_dir=trained_recommender[variant].encoder_dir,
        index_dir=trained_item_index[variant].folder,
        catalog=item_catalog,
    )
    # The data the examples were made from, read here for its digests.
    data = {"raw_interactions": raw_interactions, "raw_items": raw_items, "cleaned_histories": cleaned_histories}
    metrics = evaluation_report.means(variant)
    with registering_run(context, mlflow, cfg, parts, training, metrics, user_examples, trained_profiles, data) as (
        run, lineage
    ):
        version = register_servable(mlflow.tracker.client, parts, lineage, cfg.registry.model_name,
                                    version_tags=profile_quality_report.registry_tags[variant])
    registered = RegisteredModel(model_name=version.name, version=str(version.version),
                                 model_uri=f"models:/{version.name}/{version.version}", variant=variant, run_id=run.run_id)
    record_registered_model(context, mlflow, run, registered, lineage)
    return registered


@dg.asset_check(
    asset=registered_model,
    blocking=True,
    additional_ins={"user_examples": dg.AssetIn()},
    description="The challenger beats the champion on NDCG@10 (paired bootstrap interval above 0) "
    "on the evaluation users, or there is no champion; only then does `champion` move to it.",
)
def beats_champion(
    recipe: RecipeResource, mlflow: MlflowResource, registered_model: RegisteredModel, user_examples: pl.DataFrame
) -> dg.AssetCheckResult:
    cfg = recipe.get()
    examples = user_examples.filter(pl.col("split") == cfg.evaluation.split)
    decision = gate_challenger(
        mlflow.tracker.client, registered_model.version, examples, model_name=registered_model.model_name,
        samples=cfg.evaluation.bootstrap_samples, confidence=cfg.evaluation.confidence, seed=cfg.evaluation.seed,
    )
    return gate_check_result(decision)
