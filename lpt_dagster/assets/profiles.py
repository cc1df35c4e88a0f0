"""Profile and retrieval assets: zero-shot profiles from the generator, item embeddings + index."""


import time

import dagster as dg
import polars as pl

from lpt_core import text
from lpt_core.catalog_index import base_catalog_index
from lpt_core.config import Recipe
from lpt_core.generation import make_generator
from lpt_core.generation.store import ProfileStore
from lpt_core.models import load_tokenizer
from lpt_core.profiles import (
    EXAMPLE_KEYS,
    profile_train_users,
    sampling_configs,
    select_profile_examples,
    write_profiles,
)
from lpt_dagster.lineage import TrackedTable, example_splits, log_tables, read_tables, written
from lpt_dagster.metadata import frame_preview
from lpt_dagster.recording import record_item_index
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.values import ItemIndexInfo

GROUP = "profiles"
# GPU-heavy steps share this pool; dagster.yaml limits it to one at a time.
GPU_POOL = "gpu"


def progress_logger(context: dg.AssetExecutionContext, what: str):
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        context.log.info(f"{what}: {done}/{total} ({rate:.1f}/s)")

    return report


def shared_profile_store(workspace: WorkspaceResource, cfg: Recipe) -> ProfileStore:
    """The profile store every generating asset reads and adds to. Small chunks: progress is
    logged, and finished work saved, after every chunk."""
    return ProfileStore(workspace.outputs.profile_store, chunk_size=4 * cfg.generation.batch_size)


def _samples_markdown(profiles: pl.DataFrame, examples: pl.DataFrame, items: pl.DataFrame, count: int = 3) -> str:
    """A few evaluation users' histories next to their profiles: people want to read them."""
    is_eval = (profiles["split"] != "train").arg_true()[:count]
    blocks = []
    histories = text.history_texts(examples[is_eval], items)
    for row, history in zip(profiles[is_eval].iter_rows(named=True), histories):
        blocks.append(
            f"### user {row['user_id']} ({row['split']})\n\n**History**\n\n```\n{history}\n```\n\n"
            f"**Profile** ({row['num_tokens']} tokens)\n\n> {row['profile']}\n"
        )
    return "\n".join(blocks)


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def zero_shot_profiles(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_items: pl.DataFrame,
) -> pl.DataFrame:
    """Profiles the untrained generator writes for val/test users and (capped) train users: the
    first evaluation.max_train_users, or evaluation.head_train_users if more and the profile_head
    row is reported.

    Stored with the prompt hash, model id and decoding settings: rematerialising with the same
    inputs reuses them, a changed prompt, model or decoding setting regenerates only what changed.
    """
    cfg = recipe.get()
    examples = select_profile_examples(user_examples, profile_train_users(cfg.evaluation))
    generator = make_generator(cfg.models.generator, cfg.models, cfg.generation)
    store = shared_profile_store(workspace, cfg)
    started = time.perf_counter()
    profiles, fresh = write_profiles(
        examples, cleaned_items, generator, store, cfg, progress=progress_logger(context, "profiles")
    )
    seconds = time.perf_counter() - started
    samples = _samples_markdown(profiles, examples, cleaned_items)
    summary = {
        "profiles": profiles.height,
        "newly_generated": fresh,
        "mean_tokens": float(profiles["num_tokens"].mean() or 0.0),
        "share_finished_at_end_of_turn": float(profiles["finished"].mean() or 0.0),
        "generation_seconds": seconds,
    }
    with mlflow.asset_run(context, cfg, "zero_shot_profiles") as run:
        run.log_metrics(summary)
        run.log_text(samples, "profile_samples.md")
        log_tables(run, [
            *example_splits(user_examples),
            *read_tables(cleaned_items=cleaned_items),
            *written([TrackedTable("zero_shot_profiles", profiles, "user_examples", "profiles")]),
        ])
    context.add_output_metadata(
        {**summary, "model": generator.model_id, "samples": dg.MetadataValue.md(samples),
         "preview": frame_preview(profiles), "mlflow_run": mlflow.link(run)}
    )
    return profiles


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def sampled_profiles(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_items: pl.DataFrame,
) -> pl.DataFrame:
    """evaluation.sampled_profiles profiles per evaluated example, sampled from the untrained
    generator, for the report's "profile_mean" row (none when the recipe asks for none)."""
    cfg = recipe.get()
    ev = cfg.evaluation
    examples = user_examples.filter(pl.col("split") == ev.split)
    frames = [pl.DataFrame(schema={**dict(examples.select(EXAMPLE_KEYS).schema), "sample": pl.Int32, "profile": pl.String})]
    if ev.sampled_profiles:
        tokenizer = load_tokenizer(cfg.models.generator)
        prompts = text.build_prompts(examples, cleaned_items, tokenizer, cfg.prompt, cfg.data.source)
        store = shared_profile_store(workspace, cfg)
        for sample, gen_cfg in enumerate(sampling_configs(cfg.generation, ev.sampled_profiles, ev.sample_temperature)):
            generator = make_generator(cfg.models.generator, cfg.models, gen_cfg)
            generated, _ = store.get_or_generate(
                prompts, generator, gen_cfg, progress=progress_logger(context, f"sample {sample + 1}/{ev.sampled_profiles}")
            )
            frames.append(examples.select(EXAMPLE_KEYS).with_columns(
                pl.lit(sample, dtype=pl.Int32).alias("sample"),
                pl.Series("profile", [g.text for g in generated], dtype=pl.String),
            ))
    profiles = pl.concat(frames)
    summary = {"samples_per_example": ev.sampled_profiles, "profiles": profiles.height}
    with mlflow.asset_run(context, cfg, "sampled_profiles") as run:
        run.log_metrics(summary)
        log_tables(run, [
            *example_splits(user_examples, [ev.split]),
            *read_tables(cleaned_items=cleaned_items),
            *written([TrackedTable("sampled_profiles", profiles, "user_examples", "profiles")]),
        ])
    context.add_output_metadata({**summary, "preview": frame_preview(profiles), "mlflow_run": mlflow.link(run)})
    return profiles


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def item_index(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    item_catalog: pl.DataFrame,
) -> ItemIndexInfo:
    """Embeddings of every catalogue item's text and a faiss index over them (exact by default)."""
    cfg = recipe.get()
    kind = cfg.evaluation.index_kind
    built = base_catalog_index(item_catalog, cfg.models, kind, progress=progress_logger(context, "item texts"))
    folder = built.index.save(workspace.outputs.folder("item_index"))
    info = ItemIndexInfo(folder=folder, items=built.items, dim=built.encoder.dimension, kind=kind,
                         encoder=cfg.models.encoder)
    record_item_index(context, mlflow, cfg, info, built, item_catalog)
    return info
