"""The tiny pipeline the Dagster tests run: a seeded dataset in MovieLens-100K's format, a recipe on
the tiny models sized to run in seconds, and the resources of a run (its own recipe, MLflow store
and outputs root, in a tmp folder). tests/test_pipeline.py runs it end to end; tests/test_assets.py
materialises its assets one at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lpt_core.merging import deep_merge
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource

USERS, ITEMS, PER_USER = 40, 30, 16
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_movielens_fixture(folder: Path, bad_rating_row: bool = False) -> Path:
    """A small dataset in RecBole's ml-100k atomic-file format, seeded: USERS users who each rated
    PER_USER of ITEMS items."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, USERS + 1):
        items = rng.choice(np.arange(1, ITEMS + 1), size=PER_USER, replace=False)
        start = 880_000_000 + user * 1000
        for position, item in enumerate(items):
            lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{start + position * 60}")
    if bad_rating_row:
        lines[5] = lines[5].rsplit("\t", 2)[0] + "\t7\t880000001"
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for item in range(1, ITEMS + 1):
        genres = " ".join(rng.choice(GENRES, size=2, replace=False))
        item_lines.append(f"{item}\tMovie number {item}\t{1980 + item}\t{genres}")
    (folder / "ml-100k.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
    return folder


def write_recipe(folder: Path, data_dir: Path, models: dict[str, Path], overrides: dict | None = None) -> Path:
    """folder/tiny.yaml: the tiny pipeline's recipe over `data_dir`, with `overrides` merged over it."""
    recipe = {
        "data": {"source": "movielens_100k", "path": str(data_dir), "k_core": 2},
        "split": {"history_len": 3, "windows_per_user": 2, "window_stride": 3},
        "models": {"generator": str(models["generator"]), "encoder": str(models["encoder"]), "dtype": "float32"},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "evaluation": {
            "bootstrap_samples": 50, "max_train_users": 4, "sampled_profiles": 2,
            "methods": [
                "random", "popularity", "item_knn", "sasrec", "last_item_text", "history_text", "profile",
                "profile_mean",
            ],
        },
        "baselines": {"sasrec_trials": 1, "epochs": 2, "knn_neighbours": [5]},
        "quality": {"judge": str(models["generator"]), "max_users": 5, "edits_per_user": 1},
        "training": {
            "rounds": 1, "max_train_users": 6, "max_val_users": 4,
            "rl": {"updates_per_round": 1, "prompts_per_update": 2, "micro_batch_size": 4, "sampling": {"max_new_tokens": 6}},
            "contrastive": {"steps_per_round": 2, "batch_size": 4},
        },
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(deep_merge(recipe, overrides or {})), encoding="utf-8")
    return path


def pipeline_resources(root: Path, recipe_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The resources of a test run: its own recipe and MLflow store, and one outputs root,
    root/outputs. The work folder ($LPT_HOME) is elsewhere, so a file written there by an asset
    that bypassed the workspace resource shows."""
    monkeypatch.setenv("LPT_HOME", str(root / "lpt"))
    workspace = WorkspaceResource(root=str(root / "outputs"))
    return {
        "recipe": RecipeResource(name=str(recipe_path)),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"),
        "workspace": workspace,
        "io_manager": LocalFilesIOManager(workspace=workspace),
    }
