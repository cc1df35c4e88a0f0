"""Profile and retrieval assets: zero-shot profiles from the generator, item embeddings + index."""

import time
from functools import partial

import dagster as dg
import polars as pl

from lpt_core.catalog_index import base_catalog_index
from lpt_core.config import Recipe
from lpt_core.generation.store import ProfileStore
from lpt_core.profile_writing import write_sampled_profiles, write_zero_shot_profiles
from lpt_dagster.recording.profiles import record_item_index, record_sampled_profiles, record_zero_shot_profiles
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
    written_profiles = write_zero_shot_profiles(
        user_examples, cleaned_items, cfg, shared_profile_store(workspace, cfg), progress_logger(context, "profiles")
    )
    record_zero_shot_profiles(context, mlflow, cfg, written_profiles, user_examples, cleaned_items)
    return written_profiles.profiles


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
    profiles = write_sampled_profiles(
        user_examples, cleaned_items, cfg, shared_profile_store(workspace, cfg), partial(progress_logger, context)
    )
    record_sampled_profiles(context, mlflow, cfg, profiles, user_examples, cleaned_items)
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
