"""Training assets: the alternating CL/RL training of every variant, their profiles and indexes.

Each variant (lpt_core.training.variants) trains in its own checkpoint folder, phase by phase; a
run killed mid-way resumes from the last finished phase when the asset is materialised again with
the same recipe. Each variant logs to its own MLflow child run under the Dagster run's parent.
"""

import time

import dagster as dg
import numpy as np
import polars as pl

from lpt_core.models import load_encoder
from lpt_core.profiles import EXAMPLE_KEYS, joined_profiles, write_profiles
from lpt_core.retrieval import TextEncoder
from lpt_core.tracking import RunHandle
from lpt_core.training.alternation import TrainingData, train_variant
from lpt_core.training.curves import CURVE_KEYS, save_training_curves
from lpt_core.training.item_head import ItemHead, build_item_index
from lpt_core.training.policy import trained_profile_writer
from lpt_core.training.variants import get_variant
from lpt_dagster.assets.profiles import GPU_POOL, progress_logger, shared_profile_store
from lpt_dagster.lineage import TrackedTable, catalog_table, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import frame_preview, png_markdown
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.subsets import selected_outputs
from lpt_dagster.values import (
    TrainedGenerator,
    TrainedGenerators,
    TrainedIndex,
    TrainedIndexes,
    TrainedRecommender,
    TrainedRecommenders,
    fields_json,
)

GROUP = "training"
# What trained_profiles keeps of each variant's profiles, beside EXAMPLE_KEYS and the variant name.
PROFILE_COLUMNS = ("profile", "num_tokens", "finished")


class _MlflowCallbacks:
    """Training progress to the variant's MLflow run (metrics per step) and the Dagster log."""

    def __init__(self, run: RunHandle, context: dg.AssetExecutionContext, variant: str) -> None:
        self.run, self.context, self.variant = run, context, variant
        self.steps: dict[str, int] = {}

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        # One running step count per phase, so curves continue across rounds.
        global_step = self.steps.get(phase, 0)
        self.steps[phase] = global_step + 1
        numbers = {f"{phase}.{k}": float(v) for k, v in values.items() if isinstance(v, int | float)}
        self.run.log_metrics(numbers, step=global_step)
        self.context.log.info(f"{self.variant} round {round_index} {phase} step {step}: {numbers}")

    def artifact_text(self, name: str, text_: str) -> None:
        self.run.log_text(text_, f"samples/{name}")

    def log(self, message: str) -> None:
        self.context.log.info(f"{self.variant}: {message}")


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
    generators, recommenders, summaries, curves = {}, {}, {}, {}
    for name in cfg.training.variants:
        variant = get_variant(name)
        variant_recipe = variant.recipe_for(cfg)
        overridden = {key: f"{mine!r} -> {theirs!r}" for key, (mine, theirs) in variant.overridden_settings(cfg).items()}
        for key, change in overridden.items():
            context.log.info("%s overrides the recipe's %s: %s", name, key, change)
        started = time.perf_counter()
        with mlflow.asset_run(context, variant_recipe, f"training/{name}") as run:
            run.set_tags({"lpt.variant": name, "lpt.variant_description": variant.description})
            log_tables(run, trained_on)
            result = train_variant(cfg, name, data, workspace.outputs, _MlflowCallbacks(run, context, name))
            run.log_artifact(result.adapter_dir, "generator_adapter")
            run.log_artifact(result.encoder_dir, "recommender")
            run.log_dict({"base_model": cfg.models.generator, "history": result.history}, "training_summary.json")
            curves[name] = _metric_histories(run)
        seconds = time.perf_counter() - started
        generators[name] = TrainedGenerator(
            adapter_dir=result.adapter_dir, base_model=cfg.models.generator,
            trains_generator=variant.trains_generator, checkpoint=result.checkpoint,
            training_hash=variant_recipe.training_hash(), mlflow_run_id=run.run_id,
        )
        recommenders[name] = TrainedRecommender(
            encoder_dir=result.encoder_dir, item_bias=result.item_bias, item_head=result.item_head
        )
        summaries[name] = {
            "seconds": round(seconds, 1), "resumed_from": result.resumed_from,
            "last_phase": result.history[-1] if result.history else None, "mlflow_run": mlflow.run_url(run),
            "overrides_recipe": overridden,
        }
    metadata = {"variants": dg.MetadataValue.json(summaries)}
    if any(points for series in curves.values() for points in series.values()):  # none if all were trained before
        plot = save_training_curves(curves, workspace.outputs.folder("training") / "curves.png")
        metadata["curves"] = png_markdown(plot)
    yield from selected_outputs(
        context,
        dg.Output(TrainedGenerators(generators), output_name="trained_generator", metadata=metadata),
        dg.Output(
            TrainedRecommenders(recommenders), output_name="trained_recommender",
            metadata={"variants": dg.MetadataValue.json(fields_json(TrainedRecommenders(recommenders))["variants"])},
        ),
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
    indexes, metrics = {}, {}
    for name, recommender in trained_recommender.variants.items():
        encoder = TextEncoder(load_encoder(str(recommender.encoder_dir), cfg.models))
        started = time.perf_counter()
        embeddings = encoder.encode(item_catalog["text"].to_list())
        metrics[f"{name}.encode_seconds"] = time.perf_counter() - started
        bias = None if recommender.item_bias is None else np.load(recommender.item_bias)
        head = None if recommender.item_head is None else ItemHead.load(recommender.item_head)
        index = build_item_index(
            item_catalog["item_id"].to_list(), embeddings, kind=cfg.evaluation.index_kind, item_bias=bias, head=head
        )
        folder = workspace.outputs.folder("trained_item_index") / name
        index.save(folder)
        indexes[name] = TrainedIndex(
            folder=folder, encoder_dir=recommender.encoder_dir, has_item_bias=bias is not None,
            has_item_head=head is not None,
        )
        metrics[f"{name}.items"] = len(index.item_ids)
        context.log.info(f"{name}: indexed {len(index.item_ids)} items")
    trained = TrainedIndexes(indexes)
    with mlflow.asset_run(context, cfg, "trained_item_index") as run:
        run.log_metrics(metrics)
        log_tables(run, [catalog_table(item_catalog)])
    context.add_output_metadata(
        {"variants": dg.MetadataValue.json(fields_json(trained)["variants"]), "mlflow_run": mlflow.link(run)}
    )
    return trained


def _per_variant_metrics(per_variant: pl.DataFrame) -> dict[str, float]:
    """One row per variant as metrics named <variant>.<column>."""
    return {
        f"{row['variant']}.{column}": value
        for row in per_variant.iter_rows(named=True)
        for column, value in row.items()
        if column != "variant"
    }


def _metric_histories(run: RunHandle) -> dict[str, list[tuple[int, float]]]:
    """The variant run's logged training curves (this materialisation's steps; a resumed run's
    earlier steps live in the run that was interrupted)."""
    return {
        key: [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, key)]
        for key in CURVE_KEYS
    }

