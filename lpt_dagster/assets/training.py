"""Training assets: the alternating CL/RL training of every variant, their profiles and indexes.

Each variant (lpt_core.training.variants) trains in its own checkpoint folder, phase by phase; a
run killed mid-way resumes from the last finished phase when the asset is materialised again with
the same recipe. Each variant logs to its own MLflow child run under the Dagster run's parent.
With training.launch.processes > 1 a variant trains in that many processes, started by the recipe's
launcher as a subprocess whose output lines stream into the run log (lpt_core.training.launch).
"""

from functools import partial

import dagster as dg
import polars as pl

from lpt_core.catalog_index import trained_catalog_index
from lpt_core.profile_writing import write_trained_profiles
from lpt_core.training.alternation import TrainingData
from lpt_core.training.launch import train_variant_launched
from lpt_dagster.assets.profiles import GPU_POOL, progress_logger, shared_profile_store
from lpt_dagster.failures import user_errors_as_failures
from lpt_dagster.lineage import catalog_table, example_splits, read_tables
from lpt_dagster.recording.training import (
    record_trained_indexes,
    record_trained_profiles,
    tracked_training,
    training_metadata,
)
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.subsets import selected_outputs
from lpt_dagster.values import TrainedGenerators, TrainedIndex, TrainedIndexes, TrainedRecommenders, fields_json

GROUP = "training"


@dg.multi_asset(
    group_name=GROUP,
    pool=GPU_POOL,
    can_subset=True,
    outs={
        "trained_generator": dg.AssetOut(is_required=False, description="Per variant: the LoRA adapter of the profile writer + its base model."),
        "trained_recommender": dg.AssetOut(
            is_required=False,
            description="Per variant: the contrastively trained text encoder (+ item bias or item-side head)."
        ),
    },
)
def trained_models(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_items: pl.DataFrame,
    item_catalog: pl.DataFrame,
    cleaned_histories: pl.DataFrame,
):
    """Alternate contrastive (recommender) and RL (profile writer) phases for every variant."""
    cfg = recipe.get()
    data = TrainingData.from_tables(user_examples, cleaned_items, item_catalog, cleaned_histories, cfg)
    # Lineage of every variant's run: the tables as user_examples and item_catalog logged them
    # (without the prompts added here), so their digests match.
    trained_on = [
        *example_splits(user_examples, ("train", "val")),
        catalog_table(item_catalog),
        *read_tables(cleaned_items=cleaned_items, cleaned_histories=cleaned_histories),
    ]
    with user_errors_as_failures():  # a launch this machine cannot run names its setting
        trained = {
            name: tracked_training(context, mlflow, cfg, name, trained_on,
                                   partial(train_variant_launched, cfg, name, data, workspace.outputs))
            for name in cfg.training.variants
        }
    generators = TrainedGenerators({name: variant.generator for name, variant in trained.items()})
    recommenders = TrainedRecommenders({name: variant.recommender for name, variant in trained.items()})
    yield from selected_outputs(
        context,
        dg.Output(generators, output_name="trained_generator",
                  metadata=training_metadata(trained, workspace.outputs.folder("training") / "curves.png")),
        dg.Output(recommenders, output_name="trained_recommender",
                  metadata={"variants": dg.MetadataValue.json(fields_json(recommenders)["variants"])}),
    )


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def trained_profiles(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_items: pl.DataFrame,
    zero_shot_profiles: pl.DataFrame,
    trained_generator: TrainedGenerators,
) -> pl.DataFrame:
    """Every variant's profiles of the evaluation users. CL only keeps the base LLM, so its
    profiles are the zero-shot ones; the others are written by the merged trained generator."""
    cfg = recipe.get()
    profiles, fresh = write_trained_profiles(
        user_examples, cleaned_items, zero_shot_profiles, cfg, trained_generator.variants,
        shared_profile_store(workspace, cfg), partial(progress_logger, context),
    )
    record_trained_profiles(context, mlflow, cfg, profiles, fresh, user_examples, cleaned_items, zero_shot_profiles)
    return profiles


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def trained_item_index(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    item_catalog: pl.DataFrame,
    trained_recommender: TrainedRecommenders,
) -> TrainedIndexes:
    """Per variant: the catalogue embedded by its trained recommender, exact index (+ item bias, or
    the item-side head's vectors and bias)."""
    cfg = recipe.get()
    indexes, built = {}, {}
    for name, recommender in trained_recommender.variants.items():
        built[name] = trained_catalog_index(item_catalog, cfg.models, recommender.encoder_dir, recommender.item_bias,
                                            recommender.item_head, kind=cfg.evaluation.index_kind)
        indexes[name] = TrainedIndex(
            folder=built[name].index.save(workspace.outputs.folder("trained_item_index") / name),
            encoder_dir=recommender.encoder_dir, has_item_bias=recommender.item_bias is not None,
            has_item_head=recommender.item_head is not None,
        )
    trained = TrainedIndexes(indexes)
    record_trained_indexes(context, mlflow, cfg, trained, built, item_catalog)
    return trained
