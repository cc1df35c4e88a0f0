"""The pipeline's assembly lives in lpt_core (issue 30.1): an asset is its inputs, one library call
and its value, so a script that calls the same function gets the tables and the index the assets
store (tests/test_asset_bodies.py keeps the bodies short)."""


import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from test_pipeline import write_movielens_fixture

from lpt_core.catalog_index import base_catalog_index
from lpt_core.config import load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.retrieval import ItemIndex
from lpt_dagster.assets.data import cleaned_data, raw_data, split_data
from lpt_dagster.assets.profiles import item_index
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource


@pytest.fixture
def materialised(tmp_path, tiny_lm_folder, tiny_encoder_folder, monkeypatch):
    """The data assets and item_index materialised on a small MovieLens fixture: the recipe's
    path and the IO manager that stored them."""
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "lpt"))
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "data": {"source": "movielens_100k", "path": str(write_movielens_fixture(tmp_path / "ml")), "k_core": 2},
        "split": {"history_len": 3, "windows_per_user": 2, "window_stride": 3},
        "models": {"generator": str(tiny_lm_folder), "encoder": str(tiny_encoder_folder), "dtype": "float32"},
    }), encoding="utf-8")
    workspace = WorkspaceResource(root=str(tmp_path / "outputs"))
    stored = LocalFilesIOManager(workspace=workspace)
    result = dg.materialize(
        [raw_data, cleaned_data, split_data, item_index],
        resources={"recipe": RecipeResource(name=str(recipe_path)),
                   "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
                   "workspace": workspace, "io_manager": stored},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return recipe_path, stored


def _stored(stored: LocalFilesIOManager, asset: str):
    return stored.load_input(dg.build_input_context(asset_key=dg.AssetKey(asset)))


def test_prepare_data_makes_the_tables_the_data_assets_store(materialised):
    recipe_path, stored = materialised
    cleaned, split = prepare_data(load_recipe(str(recipe_path)))
    assert split.examples.height > 0 and split.catalog.height > 0
    for frame, asset in ((cleaned.interactions, "cleaned_histories"), (cleaned.items, "cleaned_items"),
                         (split.examples, "user_examples"), (split.catalog, "item_catalog")):
        assert_frame_equal(frame, _stored(stored, asset))


def test_the_base_catalogue_index_is_the_item_index_asset(materialised):
    recipe_path, stored = materialised
    recipe = load_recipe(str(recipe_path))
    catalog: pl.DataFrame = _stored(stored, "item_catalog")
    built = base_catalog_index(catalog, recipe.models, recipe.evaluation.index_kind)
    asset = ItemIndex.load(_stored(stored, "item_index").folder)
    assert built.index.item_ids.tolist() == asset.item_ids.tolist() == catalog["item_id"].to_list()
    np.testing.assert_allclose(built.index.vectors, asset.vectors, atol=1e-6)
