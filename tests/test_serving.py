"""The servable pyfunc model and `mlflow models serve` over it, on tiny random models built in code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from tiny_encoder import build_tiny_encoder
from tiny_lm import build_tiny_lm

from lpt_core import text
from lpt_core.config import Recipe
from lpt_core.serving.pyfunc_model import ServableParts, save_servable_model
from lpt_core.serving.steering import edit_profile

GENRES = ["Comedy", "Horror", "Documentary", "Drama", "Romance", "Western"]
ITEMS = 30


def tiny_catalog() -> pl.DataFrame:
    """ITEMS rows (+ text) whose titles and genres use words the tiny encoder knows."""
    rows = {
        "item_id": [str(i) for i in range(1, ITEMS + 1)],
        "title": [f"{GENRES[i % 6].lower()} story {i}" for i in range(ITEMS)],
        "year": [1980 + i for i in range(ITEMS)],
        "description": [None] * ITEMS,
        "categories": [[GENRES[i % 6], GENRES[(i + 1) % 6]] for i in range(ITEMS)],
        "price": [None] * ITEMS,
        "average_rating": [None] * ITEMS,
    }
    schema = {"item_id": pl.String, "title": pl.String, "year": pl.Int32, "description": pl.String,
              "categories": pl.List(pl.String), "price": pl.String, "average_rating": pl.Float32}
    catalog = pl.DataFrame(rows, schema=schema)
    return catalog.with_columns(text.item_texts(catalog).alias("text"))


def build_parts(root: Path, encoder_seed: int = 0) -> ServableParts:
    """A trained-variant stand-in: tiny LM + fresh LoRA adapter, tiny encoder, flat index."""
    from lpt_core.models import load_encoder, load_generator
    from lpt_core.retrieval import ItemIndex, TextEncoder
    from lpt_core.training.rl import make_policy

    lm, encoder_dir = build_tiny_lm(root / "lm"), build_tiny_encoder(root / "encoder", seed=encoder_seed)
    recipe = Recipe.model_validate({
        "name": "tiny",
        "models": {"generator": str(lm), "encoder": str(encoder_dir), "dtype": "float32", "device": "cpu"},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "prompt": {"history_format": "lines"},
        "data": {"max_prompt_tokens": 400},
    })
    base, _ = load_generator(str(lm), recipe.models)
    make_policy(base, recipe.training.rl).save_pretrained(root / "adapter")
    catalog = tiny_catalog()
    encoder = TextEncoder(load_encoder(str(encoder_dir), recipe.models))
    index = ItemIndex.build(catalog["item_id"].to_list(), encoder.encode(catalog["text"].to_list()), kind="flat")
    index.save(root / "index")
    return ServableParts(recipe, root / "adapter", encoder_dir, root / "index", catalog)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Saved, then the training-side folders deleted: every later load proves self-containment."""
    root = tmp_path_factory.mktemp("servable")
    saved = save_servable_model(build_parts(root / "parts"), root / "model")
    shutil.rmtree(root / "parts")
    return saved


@pytest.fixture(scope="module")
def model(model_dir: Path):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(model_dir))


def test_history_and_profile_rows_get_top_k_items_with_titles(model):
    answers = model.predict(pd.DataFrame({
        "history_item_ids": [["1", "2", "3"], None],
        "history_ratings": [[5.0, 4.0, 1.0], None],
        "profile": [None, "loves comedy films"],
        "k": [4, 6],
    }))
    assert list(answers.columns) == ["profile", "item_ids", "titles", "scores"]
    first, second = answers.iloc[0], answers.iloc[1]
    assert len(first["item_ids"]) == 4 and not {"1", "2", "3"} & set(first["item_ids"])
    assert second["profile"] == "loves comedy films" and len(second["item_ids"]) == 6
    assert second["titles"][0] == tiny_catalog().filter(pl.col("item_id") == second["item_ids"][0])["title"][0]
    assert list(second["scores"]) == sorted(second["scores"], reverse=True)


def test_the_model_folder_is_self_contained(model_dir: Path):
    """Every artifact lives inside the model's own folder; signature and input example are saved."""
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"]["artifacts"]
    assert set(artifacts) == {"generator", "adapter", "recommender", "item_index", "catalog", "recipe"}
    assert all((model_dir / a["path"]).exists() for a in artifacts.values())
    assert (model_dir / artifacts["generator"]["path"] / "config.json").is_file()
    assert "history_item_ids" in mlmodel["signature"]["inputs"]
    assert (model_dir / "input_example.json").is_file()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"history_item_ids": ["1", "999"]}, "unknown item ids"),
        ({"history_item_ids": []}, "history_item_ids is empty"),
        ({"profile": "comedy " * 200}, "profile is too long"),
        ({"profile": "comedy", "k": 0}, "k must be between 1 and"),
        ({"k": 3}, "give history_item_ids or profile"),
        ({"history_item_ids": ["1", "2"], "history_ratings": [5.0]}, "1 history_ratings for 2"),
        ({"history_item_ids": ["1"], "history_ratings": ["great"]}, "history_ratings must be numbers"),
    ],
)
def test_bad_rows_are_refused_with_a_message_naming_the_problem(model, row, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message) as caught:
        model.predict(pd.DataFrame([row]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_an_edited_profile_moves_the_ranking(model):
    profile = "loves horror films. enjoys western stories"
    edited = edit_profile(profile, ["remove: horror", "add: loves comedy and comedy films"])
    before, after = model.predict(pd.DataFrame({"profile": [profile, edited], "k": [5, 5]}))["item_ids"]
    assert list(before) != list(after)


@pytest.mark.parametrize(
    ("profile", "edits", "expected"),
    [
        ("Enjoys comedies, horror films and dramas. Likes old westerns.", ["remove: horror"],
         "Enjoys comedies and dramas. Likes old westerns."),
        ("Enjoys comedies and dramas. Loves horror films, especially slashers.", ["remove: Horror"],
         "Enjoys comedies and dramas."),
        ("Enjoys comedies", ["add: loves documentaries"], "Enjoys comedies. Loves documentaries."),
        ("Enjoys comedies.", ["add: loves documentaries", "remove: comedies"], "Loves documentaries."),
    ],
)
def test_edit_profile_adds_sentences_and_removes_clauses(profile, edits, expected):
    assert edit_profile(profile, edits) == expected


def test_a_removal_that_would_leave_no_profile_says_so():
    with pytest.raises(ValueError, match="every sentence of the profile mentions 'horror'.*add: dislikes horror"):
        edit_profile("Loves horror. Horror films, always.", ["remove: horror"])


@pytest.mark.parametrize("edit", ["replace: x", "add:", "horror"])
def test_edit_profile_names_an_edit_it_cannot_apply(edit):
    with pytest.raises(ValueError, match="expected 'add: <text>' or 'remove: <term>'"):
        edit_profile("Enjoys comedies.", [edit])
