"""Training assets: the alternating CL/RL training of every variant, their profiles and indexes.

Each variant (lpt_core.training.variants) trains in its own checkpoint folder, phase by phase; a
run killed mid-way resumes from the last finished phase when the asset is materialised again with
the same recipe. Each variant logs to its own MLflow child run under the Dagster run's parent.
"""

from functools import partial

import dagster as dg
import polars as pl

from lpt_core.catalog_index import trained_catalog_index
from lpt_core.profiles import EXAMPLE_KEYS, joined_profiles, write_profiles
from lpt_core.training.alternation import TrainingData, train_variant
from lpt_core.training.policy import trained_profile_writer
from lpt_core.training.variants import get_variant
from lpt_dagster.assets.profiles import GPU_POOL, progress_logger, shared_profile_store
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import frame_preview
from lpt_dagster.recording import record_trained_indexes, tracked_training, training_metadata
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.subsets import selected_outputs
from lpt_dagster.values import TrainedGenerators, TrainedIndex, TrainedIndexes, TrainedRecommenders, fields_json

GROUP = "training"
# What trained_profiles keeps of each variant's profiles, beside EXAMPLE_KEYS and the variant name.
PROFILE_COLUMNS = ("profile", "num_tokens", "finished")


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
    trained = {
        name: tracked_training(context, mlflow, cfg, name, trained_on,
                               partial(train_variant, cfg, name, data, workspace.outputs))
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
    examples = user_examples.filter(pl.col("split") == cfg.evaluation.split)
    store = shared_profile_store(workspace, cfg)
    frames = []
    for name, generator in trained_generator.variants.items():
        if not generator.trains_generator:
            profiles = joined_profiles(examples, zero_shot_profiles, "zero_shot_profiles", PROFILE_COLUMNS)
        else:
            writer = trained_profile_writer(
                get_variant(name).recipe_for(cfg), generator.adapter_dir, model_id=f"{name}@{generator.checkpoint.name}"
            )
            profiles, fresh = write_profiles(
                examples, cleaned_items, writer, store, cfg, progress=progress_logger(context, f"{name} profiles")
            )
            context.log.info(f"{name}: {fresh} profiles generated, {profiles.height - fresh} reused")
        frames.append(profiles.select(*EXAMPLE_KEYS, *PROFILE_COLUMNS).with_columns(pl.lit(name).alias("variant")))
    result = pl.concat(frames)
    per_variant = result.group_by("variant").agg(
        pl.col("num_tokens").mean().alias("mean_tokens"), pl.col("finished").mean().alias("share_finished_at_end_of_turn")
    ).sort("variant")
    with mlflow.asset_run(context, cfg, "trained_profiles") as run:
        run.log_metrics(_per_variant_metrics(per_variant))
        log_tables(run, [
            *example_splits(user_examples, [cfg.evaluation.split]),
            *read_tables(cleaned_items=cleaned_items, zero_shot_profiles=zero_shot_profiles),
            *written([TrackedTable("trained_profiles", result, "trained_generator", "profiles")]),
        ])
    context.add_output_metadata(
        {"per_variant": frame_preview(per_variant), "preview": frame_preview(result), "mlflow_run": mlflow.link(run)}
    )
    return result


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


def _per_variant_metrics(per_variant: pl.DataFrame) -> dict[str, float]:
    """One row per variant as metrics named <variant>.<column>."""
    return {
        f"{row['variant']}.{column}": value
        for row in per_variant.iter_rows(named=True)
        for column, value in row.items()
        if column != "variant"
    }
