"""The servable pyfunc model and `mlflow models serve` over it, on tiny random models built in code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from builders import items_table
from tiny_encoder import build_tiny_encoder
from tiny_lm import build_tiny_lm

from lpt_core import text
from lpt_core.config import Recipe
from lpt_core.serving import start_process_group, stop_process_group
from lpt_core.serving.pyfunc_model import (
    DEFAULT_K,
    MAX_HISTORY_ITEMS_PER_REQUEST,
    MAX_ROWS_PER_REQUEST,
    ServableParts,
    requests_from_frame,
    save_servable_model,
)
from lpt_core.serving.steering import edit_profile

GENRES = ["Comedy", "Horror", "Documentary", "Drama", "Romance", "Western"]
ITEMS = 30


def tiny_catalog() -> pl.DataFrame:
    """ITEMS rows (+ text) whose titles and genres use words the tiny encoder knows."""
    catalog = items_table(
        [str(i) for i in range(1, ITEMS + 1)],
        title=[f"{GENRES[i % 6].lower()} story {i}" for i in range(ITEMS)],
        year=[1980 + i for i in range(ITEMS)],
        categories=[[GENRES[i % 6], GENRES[(i + 1) % 6]] for i in range(ITEMS)],
    )
    return catalog.with_columns(text.item_texts(catalog).alias("text"))


def build_parts(root: Path, encoder_seed: int = 0, encoder_topics: Sequence[str] = ()) -> ServableParts:
    """A trained-variant stand-in: tiny LM + fresh LoRA adapter, tiny encoder (a bag-of-topics one
    with `encoder_topics`), flat index."""
    from lpt_core.models import load_encoder, load_generator
    from lpt_core.retrieval import ItemIndex, TextEncoder
    from lpt_core.training.policy import make_policy

    lm, encoder_dir = build_tiny_lm(root / "lm"), build_tiny_encoder(
        root / "encoder", seed=encoder_seed, topics=encoder_topics
    )
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


def self_contained_model(root: Path) -> Path:
    """A servable model saved under `root`, then its training-side folders deleted: every later
    load proves self-containment."""
    saved = save_servable_model(build_parts(root / "parts"), root / "model")
    shutil.rmtree(root / "parts")
    return saved


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return self_contained_model(tmp_path_factory.mktemp("servable"))


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
    # No input schema: MLflow would drop unknown keys unseen (issue 31.10); the model checks them.
    assert mlmodel["signature"]["inputs"] is None and "item_ids" in mlmodel["signature"]["outputs"]
    assert (model_dir / "input_example.json").is_file()
    assert mlmodel["metadata"]["request_limits"] == {"rows": MAX_ROWS_PER_REQUEST, "history_items": MAX_HISTORY_ITEMS_PER_REQUEST}
    assert set(mlmodel["metadata"]["input_types"]) == {"history_item_ids", "history_ratings", "profile", "k"}


def test_a_null_or_absent_k_means_the_default_and_rows_may_have_different_keys(model):
    """A key that one row lacks reaches the model as a missing cell in that row: "not given"."""
    answers = model.predict(pd.DataFrame([
        {"profile": "loves comedy films", "k": None},
        {"history_item_ids": ["1", "2"], "k": 3},
        {"profile": "loves horror films"},
    ]))
    assert [len(ids) for ids in answers["item_ids"]] == [DEFAULT_K, 3, DEFAULT_K]


def test_whole_number_k_in_a_float_column_is_read_as_an_integer():
    """pandas holds a k column with a null as floats: 3.0 is k=3, not a type error."""
    requests = requests_from_frame(pd.DataFrame({"profile": ["a", "b"], "k": [3, None]}))
    assert [r.k for r in requests] == [3, DEFAULT_K]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"history_item_ids": ["1", "999"]}, "unknown item ids"),
        ({"history_item_ids": []}, "history_item_ids is empty"),
        ({"profile": "comedy " * 200}, "profile is too long"),
        ({"profile": "comedy", "k": 0}, "k must be between 1 and"),
        ({"k": 3}, "give history_item_ids or profile"),
        ({"history_item_ids": ["1", "2"], "history_ratings": [5.0]}, "1 history_ratings for 2"),
        ({"history_item_ids": ["1"], "history_ratings": ["great"]}, r"row 0: history_ratings\[0\] must be a number"),
        ({"history_item_ids": ["1", "2"], "history_ratings": [5, 50]}, r"row 0: history_ratings\[1\] is 50, outside the rating scale \[0, 5\]"),
        ({"history_item_ids": ["1"], "history_ratings": [-3.0]}, r"row 0: history_ratings\[0\] is -3.0, outside"),
        ({"history_item_ids": ["1"], "history_ratings": 5}, "row 0: history_ratings must be a list"),
        ({"history_item_ids": [1, 2]}, r"row 0: history_item_ids\[0\] must be a string \(an item id\), got 1"),
        ({"history_item_ids": "1"}, "row 0: history_item_ids must be a list"),
        ({"profile": "comedy", "k": 5.5}, "row 0: k must be a whole number .*got 5.5"),
        ({"profile": "comedy", "k": "5"}, "row 0: k must be a whole number .*got '5'"),
        ({"profile": "comedy", "k": "ten"}, "row 0: k must be a whole number .*got 'ten'"),
        ({"profile": "comedy", "k": True}, "row 0: k must be a whole number .*got True"),
        ({"profile": 42}, "row 0: profile must be a string"),
        # Issue 31.10: misspelt keys were dropped, and the model wrote its own profile / used k=10.
        ({"profle": "loves horror", "history_item_ids": ["1"]},
         "^row 0: unknown key 'profle'; accepted keys: history_item_ids, history_ratings, profile, k$"),
        ({"profile": "comedy", "K": 3}, "^row 0: unknown key 'K'"),
    ],
)
def test_bad_rows_are_refused_with_a_message_naming_the_problem(model, row, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message) as caught:
        model.predict(pd.DataFrame([row]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_bad_row_is_named_by_its_position_in_the_request(model):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="row 1: k must be a whole number"):
        model.predict(pd.DataFrame([{"profile": "comedy", "k": 2}, {"profile": "comedy", "k": 2.5}]))
    # Only row 1 needs a profile written: the error names its row in the request.
    long_history = tiny_catalog()["item_id"].to_list()[:20]
    with pytest.raises(MlflowException, match="row 1: the prompt has .* tokens, the generator takes at most 400"):
        model.predict(pd.DataFrame({"history_item_ids": [["1"], long_history], "profile": ["comedy", None], "k": 2}))


def test_a_request_at_the_row_limit_is_answered(model):
    answers = model.predict(pd.DataFrame({"profile": ["loves comedy films"] * MAX_ROWS_PER_REQUEST, "k": 2}))
    assert len(answers) == MAX_ROWS_PER_REQUEST


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"profile": ["loves comedy films"] * (MAX_ROWS_PER_REQUEST + 1)}),
         f"{MAX_ROWS_PER_REQUEST + 1} rows in one request, at most {MAX_ROWS_PER_REQUEST}"),
        # One row, so it is the item count that is refused, before any prompt is built.
        (pd.DataFrame({"history_item_ids": [["1"] * (MAX_HISTORY_ITEMS_PER_REQUEST + 1)]}),
         f"{MAX_HISTORY_ITEMS_PER_REQUEST + 1} history items in one request, at most {MAX_HISTORY_ITEMS_PER_REQUEST}"),
    ],
)
def test_a_request_over_the_size_limits_is_refused(model, frame, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message) as caught:
        model.predict(frame)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


# A stand-in for `mlflow models serve`: a CLI process that runs the server as its child and waits
# for it. The server, once its SIGTERM handling is set, prints its pid; on SIGTERM it exits (as an
# idle uvicorn does) or carries on (as a uvicorn whose shutdown waits for a running prediction).
CLI_STANDIN = "import subprocess, sys; subprocess.run([sys.executable, '-c', *sys.argv[1:]])"
SERVER_STANDIN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_DFL if sys.argv[1] == "exits" else signal.SIG_IGN)
print(os.getpid(), flush=True)
time.sleep(60)
"""


def _ends(pid: int, timeout_s: float = 1.0) -> bool:
    """Whether `pid` is gone or a zombie within `timeout_s` (an orphan's zombie lingers where
    init does not reap)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize(("on_sigterm", "min_s", "max_s"), [("exits", 0, 1.5), ("carries on", 2, 4)])
def test_stopping_the_server_ends_it_and_its_cli_within_the_grace(on_sigterm, min_s, max_s):
    command = [sys.executable, "-c", CLI_STANDIN, SERVER_STANDIN, on_sigterm]
    leader = start_process_group(command, stdout=subprocess.PIPE, text=True)
    server_pid = int(leader.stdout.readline())
    started = time.monotonic()
    stop_process_group(leader, grace_s=2)
    assert min_s <= time.monotonic() - started < max_s
    assert leader.returncode is not None and _ends(server_pid)
    leader.stdout.close()


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
