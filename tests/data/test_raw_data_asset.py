"""The raw_data asset in a real (in-process) Dagster run: the user's error on top, every row counted."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lpt_dagster.assets.data import cleaned_data, raw_data
from lpt_dagster.definitions import defs
from lpt_dagster.resources import MlflowResource, RecipeResource


def _materialise(
    tmp_path: Path, data: dict, selection: list[str] | None = None, assets=(raw_data,), **recipe_overrides
) -> dg.ExecuteInProcessResult:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": data, **recipe_overrides}), encoding="utf-8")
    return dg.materialize(
        list(assets),
        selection=selection,
        resources={
            "recipe": RecipeResource(name=str(recipe)),
            "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _top_error(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = result.get_step_failure_events()
    return failure.step_failure_data.error.message


def _write_amazon(folder: Path, ratings: list) -> tuple[Path, Path]:
    reviews = folder / "reviews.jsonl"
    lines = [
        {"user_id": f"U{n}", "parent_asin": "P1", "rating": rating, "timestamp": 1588687728923 + n}
        for n, rating in enumerate(ratings)
    ]
    reviews.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    meta = folder / "meta.jsonl"
    meta.write_text(json.dumps({"parent_asin": "P1", "title": "A"}) + "\n", encoding="utf-8")
    return reviews, meta


@pytest.fixture(autouse=True)
def _work_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "lpt"))


def test_a_bad_recipe_shows_its_own_message_at_the_top_of_the_failed_run(tmp_path):
    """Issue 15.9: the run showed only 'Error occurred while executing op "raw_data":'."""
    result = _materialise(tmp_path, {"source": "movielens_100k"}, evaluation={"ks": [0]})
    assert not result.success
    message = _top_error(result)
    assert "evaluation.ks.0: Input should be greater than 0" in message
    assert "Error occurred while executing op" not in message


def test_all_bad_input_fails_the_run_with_the_counts_at_the_top(tmp_path):
    """Issue 15.1: every rating bad under `quarantine` gave 0 interactions and a successful run."""
    reviews, meta = _write_amazon(tmp_path, ["five"] * 3)
    data = {"source": "amazon_2023", "path": str(reviews), "items_path": str(meta), "bad_rows": "quarantine"}
    result = _materialise(tmp_path, data)
    assert not result.success
    assert "3 of 3 rows quarantined (100.0%" in _top_error(result)


def test_every_input_row_is_accounted_for_in_the_metadata(tmp_path):
    """Issue 15.5: blank lines and repeated ids went uncounted."""
    reviews, meta = _write_amazon(tmp_path, ["5.0", 4, 3])
    meta.write_text(meta.read_text() * 2, encoding="utf-8")  # P1 twice
    data = {"source": "amazon_2023", "path": str(reviews), "items_path": str(meta)}
    result = _materialise(tmp_path, data)
    assert result.success
    metadata = result.asset_materializations_for_node("raw_data")[0].metadata
    assert metadata["input_rows"].value == 4 + 2
    assert metadata["skipped_rows"].value == 2  # one blank line, one repeated parent_asin
    accounts = metadata["input_accounts"].value
    assert [(a["rows"], a["kept"], a["quarantined"]) for a in accounts] == [(4, 3, 0), (2, 1, 0)]
    assert accounts[1]["skipped"] == {"repeated parent_asin (first kept)": 1}


@pytest.mark.parametrize("selected", ["raw_interactions", "raw_items"])
def test_one_output_of_the_raw_data_multi_asset_materialises_alone(tmp_path, selected):
    """Issue 15.15: selecting raw_interactions alone raised InvalidSubsetError."""
    reviews, meta = _write_amazon(tmp_path, [5, 4, 3])
    data = {"source": "amazon_2023", "path": str(reviews), "items_path": str(meta)}

    result = _materialise(tmp_path, data, selection=[selected])

    assert result.success
    assert [m.asset_key.path[-1] for m in result.get_asset_materialization_events()] == [selected]


def test_every_multi_asset_of_the_project_can_be_subset():
    multi_assets = [a for a in defs.resolve_asset_graph().assets_defs if len(a.keys) > 1]
    assert {key.path[-1] for a in multi_assets for key in a.keys} >= {"raw_interactions", "cleaned_histories",
                                                                       "user_examples", "trained_generator"}
    assert all(a.can_subset for a in multi_assets)


def test_the_cleaning_report_counts_the_rows_the_read_quarantined(tmp_path, tiny_encoder_folder):
    """Issue 31.4: the cleaning step reported "Quarantined input rows: 0" after the read set 2 aside."""
    reviews, meta = _write_amazon(tmp_path, [5] * 18 + ["five", "bad"])
    data = {"source": "amazon_2023", "path": str(reviews), "items_path": str(meta), "bad_rows": "quarantine",
            "k_core": 1}
    result = _materialise(tmp_path, data, assets=(raw_data, cleaned_data), models={"encoder": str(tiny_encoder_folder)})
    assert result.success
    (cleaned,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path[-1] == "cleaned_histories"]
    assert "Quarantined input rows: 2" in cleaned.materialization.metadata["cleaning_steps"].value
