"""The profile page's API on a registered champion built from tiny models: a bag-of-topics encoder
(tests/tiny_encoder.py), so that profiles steer the list by their genre words, and a generator
rewired to write one known profile (tests/tiny_lm.py). The browser tests
(test_profile_page_browser.py) drive the page itself on the same set-up (build_page_home).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from builders import example_row, examples_table
from fastapi.testclient import TestClient
from test_serving import GENRES, build_parts, tiny_catalog
from tiny_lm import force_reply

from lpt_core.paths import Outputs
from lpt_core.serving import registry
from lpt_core.serving.profile_page.app import create_app
from lpt_core.serving.profile_page.workbench import MAX_PROFILE_CHARS, PageTables, ProfileWorkbench, load_registered
from lpt_core.serving.pyfunc_model import save_servable_model
from lpt_core.tracking import Tracker

VARIANT = "tiny_variant"
WRITTEN_PROFILE = "loves comedy"  # what the rewired generator writes for any history
# user -> (split, history, ratings, target, zero-shot profile, trained profile of VARIANT)
USERS = {
    "u1": ("test", ["1", "2", "3", "4"], [5.0, 4.0, 2.0, 5.0], "11",
           "Enjoys comedy and drama films.", "Likes romance stories and old western films."),
    "u2": ("test", ["5", "6"], [3.0, 4.0], "11", "Loves documentary films.", None),
    "u3": ("test", ["8", "9", "10"], None, "12", None, None),
    "t1": ("train", ["13", "14"], [4.0, 4.0], "15", None, None),
}


@dataclass(frozen=True)
class PageHome:
    """A registry whose champion is a tiny servable model, and the tables of a pipeline run."""

    tracking_uri: str
    lpt_home: Path

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.lpt_home / "outputs")

    def workbench(self) -> ProfileWorkbench:
        served = load_registered(self.tracking_uri)
        return ProfileWorkbench(served, PageTables.load(self.outputs, served.variant))


def build_page_home(root: Path) -> PageHome:
    parts = build_parts(root / "parts", encoder_topics=[g.lower() for g in GENRES])
    _rewire_generator(Path(parts.recipe.models.generator))
    model_dir = save_servable_model(parts, root / "model")
    home = PageHome(f"sqlite:///{root / 'mlflow.db'}", root / "lpt")
    _register_champion(home.tracking_uri, model_dir)
    _write_tables(home.outputs)
    return home


def _rewire_generator(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    reply = tokenizer(f" {WRITTEN_PROFILE}", add_special_tokens=False)["input_ids"]
    force_reply(model, reply, end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    model.save_pretrained(folder)


def _register_champion(tracking_uri: str, model_dir: Path) -> None:
    tracker = Tracker(tracking_uri=tracking_uri)
    parent = tracker.parent_run("page-run", name="page-run")
    with tracker.child_run(parent, "registered_model") as run:
        lineage = registry.Lineage(
            "page-run", recipe_hash="r", variant=VARIANT, training_hash="t", checkpoint="/c",
            training_run_id=run.run_id, registering_run_id=run.run_id,
        )
        version = registry.register_challenger(tracker.client, model_dir, lineage)
    # With no champion yet the gate promotes without scoring: the examples are not read.
    assert registry.gate_challenger(tracker.client, version.version, pl.DataFrame()).promoted


def _write_tables(outputs: Outputs) -> None:
    outputs.root.mkdir(parents=True)
    rows = [(user, *values) for user, values in USERS.items()]
    examples = examples_table(*[example_row(r[0], r[1], r[2], r[4], history_ratings=r[3]) for r in rows])
    examples.write_parquet(outputs.table("user_examples"))
    keys = examples.select("user_id", "split", "window")
    keys.with_columns(pl.Series("profile", [r[5] for r in rows])).drop_nulls("profile").write_parquet(
        outputs.table("zero_shot_profiles")
    )
    trained = keys.with_columns(pl.Series("profile", [r[6] for r in rows]), pl.lit(VARIANT).alias("variant"))
    other_variant = trained.with_columns(pl.lit("other words").alias("profile"), pl.lit("other").alias("variant"))
    pl.concat([trained.drop_nulls("profile"), other_variant]).write_parquet(outputs.table("trained_profiles"))


def wait_until_ready(client: TestClient, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get("/api/status").json()
        if status["ready"] or status.get("error"):
            return status
        time.sleep(0.1)
    raise TimeoutError("the page's model did not load")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> PageHome:
    return build_page_home(tmp_path_factory.mktemp("profile_page"))


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(home.workbench)) as client:
        assert wait_until_ready(client)["ready"]
        yield client


def recommend(client: TestClient, **body) -> dict:
    answer = client.post("/api/recommend", json=body)
    assert answer.status_code == 200, answer.json()
    return answer.json()


def genre_count(ranking: dict, genre: str) -> int:
    return sum(genre in entry["item"]["genres"] for entry in ranking["items"])


def test_the_page_loads_the_champion_with_the_test_users_and_genres(client):
    status = client.get("/api/status").json()
    assert status["model_uri"] == "models:/langptune/1" and "champion" in status["model"]
    assert status["variant"] == VARIANT and status["k"] == 20
    assert status["users"] == ["u1", "u2", "u3"]  # the test split; t1 is a train user
    assert status["genres"] == sorted(GENRES)


def test_a_person_has_their_history_oldest_first_both_profiles_and_the_target(client):
    person = client.get("/api/users/u1").json()
    titles = dict(zip(tiny_catalog()["item_id"].to_list(), tiny_catalog()["title"].to_list(), strict=True))
    assert [(h["item"]["title"], h["rating"]) for h in person["history"]] == [
        (titles[i], r) for i, r in zip(USERS["u1"][1], USERS["u1"][2], strict=True)
    ]
    assert person["history"][0]["item"]["genres"] == ["Comedy", "Horror"]
    assert person["zero_shot_profile"] == USERS["u1"][4] and person["trained_profile"] == USERS["u1"][5]
    assert person["target"]["item_id"] == "11" and person["split"] == "test"
    # A typed id of another split is found too; a user with no trained profile has none.
    assert client.get("/api/users/t1").json()["split"] == "train"
    assert client.get("/api/users/u2").json()["trained_profile"] is None


def test_an_unknown_user_is_a_404_with_a_message(client):
    answer = client.get("/api/users/nobody")
    assert answer.status_code == 404
    assert answer.json() == {"message": "No user 'nobody' in the split: the examples have 4 users."}


def test_a_ranking_leaves_the_history_out_and_marks_the_target(client):
    ranking = recommend(client, profile="Loves comedy and horror.", user_id="u1")
    ids = [entry["item"]["item_id"] for entry in ranking["items"]]
    assert len(ids) == 20 and not set(USERS["u1"][1]) & set(ids)
    assert [e["is_target"] for e in ranking["items"]] == [i == "11" for i in ids]
    assert not ranking["compared"] and ranking["moved_out"] == []


def test_loving_horror_brings_more_horror_and_a_dislike_of_it_fewer(client):
    profile = USERS["u1"][5]
    before = recommend(client, profile=profile, user_id="u1")
    loves = recommend(client, profile=f"{profile} Loves horror movies.", user_id="u1")
    dislike = recommend(client, profile=loves["profile"], user_id="u1", edit={"kind": "add_dislike", "genre": "Horror"})
    assert dislike["profile"] == f"{profile} Loves horror movies. They dislike Horror movies."
    assert genre_count(loves, "Horror") > genre_count(before, "Horror") > genre_count(dislike, "Horror")


@pytest.mark.parametrize(
    ("kind", "genre", "expected"),
    [
        ("add_genre", "Western", "Enjoys comedy and drama films. They love Western movies."),
        ("remove_genre", "Drama", "Enjoys comedy."),
        ("add_dislike", "Comedy", "Enjoys comedy and drama films. They dislike Comedy movies."),
    ],
)
def test_quick_edits_are_the_served_models_steering_edits(client, kind, genre, expected):
    edited = recommend(client, profile=USERS["u1"][4], user_id="u1", edit={"kind": kind, "genre": genre})
    assert edited["profile"] == expected
    # The list is the one the edited text gets when typed in.
    typed = recommend(client, profile=expected, user_id="u1")
    assert [e["item"]["item_id"] for e in edited["items"]] == [e["item"]["item_id"] for e in typed["items"]]


def test_moves_compare_the_list_with_the_previous_one(client):
    first = recommend(client, profile="Enjoys drama and romance.", user_id="u2")
    previous = [e["item"]["item_id"] for e in first["items"]]
    second = recommend(client, profile="Loves horror and western.", user_id="u2", previous_item_ids=previous)
    current = [e["item"]["item_id"] for e in second["items"]]
    assert second["compared"] and current != previous
    for entry in second["items"]:
        item_id = entry["item"]["item_id"]
        assert entry["moved_in"] == (item_id not in previous)
        assert entry["places_up"] == (0 if entry["moved_in"] else previous.index(item_id) + 1 - entry["rank"])
    moved_out = [(m["item"]["item_id"], m["previous_rank"]) for m in second["moved_out"]]
    assert moved_out == [(i, previous.index(i) + 1) for i in previous if i not in current]
    assert sum(e["moved_in"] for e in second["items"]) == len(moved_out) > 0


def test_the_export_replays_to_the_same_list_through_the_served_scoring_server(client, home):
    """The exported JSON is a request body for `mlflow models serve`: its own scoring app (the
    one that server runs), on the champion loaded afresh, answers it with the same list."""
    from mlflow.pyfunc import scoring_server
    from mlflow.tracking import MlflowClient

    ranking = recommend(client, profile="Loves horror and western.", user_id="u1", edit={"kind": "add_genre", "genre": "Drama"})
    export = ranking["export"]
    assert export["model"] == "models:/langptune/1"
    assert export["dataframe_records"] == [{
        "history_item_ids": USERS["u1"][1], "history_ratings": USERS["u1"][2],
        "profile": "Loves horror and western. They love Drama movies.", "k": 20,
    }]
    model = registry.load_version(MlflowClient(home.tracking_uri), registry.MODEL_NAME, "1")
    served = TestClient(scoring_server.init(model)).post("/invocations", json=export)
    assert served.status_code == 200, served.text
    answer = served.json()["predictions"][0]
    assert answer["item_ids"] == [e["item"]["item_id"] for e in ranking["items"]] == export["predictions"][0]["item_ids"]
    assert answer["scores"] == pytest.approx([e["score"] for e in ranking["items"]], abs=1e-6)


def test_cold_start_ranks_from_the_text_alone(client):
    ranking = recommend(client, profile="Loves western movies.")
    assert ranking["export"]["dataframe_records"] == [
        {"history_item_ids": None, "history_ratings": None, "profile": "Loves western movies.", "k": 20}
    ]
    assert "Western" in ranking["items"][0]["item"]["genres"]
    assert not any(e["is_target"] for e in ranking["items"])


def test_with_no_profile_the_model_writes_one_from_the_history(client):
    ranking = recommend(client, profile=None, user_id="u3")
    assert ranking["profile_written"] and ranking["profile"] == WRITTEN_PROFILE
    assert ranking["export"]["dataframe_records"][0]["profile"] == WRITTEN_PROFILE
    assert client.get("/api/status").json()["write_seconds"] == pytest.approx(ranking["seconds"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"profile": "   ", "user_id": "u1"}, r"^Profile is empty\.$"),
        ({"profile": "comedy " * 10_000, "user_id": "u1"},
         r"^Profile is too long: 10002 tokens, the recommender reads at most 64\.$"),
        ({"profile": "a" * (MAX_PROFILE_CHARS + 1)}, r"^The profile is 200,001 characters long; the page takes at most 200,000\.$"),
        ({"profile": "Loves horror films.", "edit": {"kind": "remove_genre", "genre": "Horror"}},
         r"every sentence of the profile mentions 'Horror', so nothing is left"),
        ({"profile": "x", "edit": {"kind": "add_genre", "genre": "Polka"}}, r"^Unknown quick edit 'add_genre' of genre 'Polka'\.$"),
        ({"profile": "x", "edit": {"kind": "rewrite", "genre": "Horror"}}, r"^The page sent a malformed request \(edit\.kind: "),
        ({"profile": None}, r"^Write a profile, or pick a user"),
        ({"profile": "x", "user_id": "<b>nobody</b>"}, r"^No user '<b>nobody</b>' in the split"),
    ],
)
def test_bad_input_gets_a_message_not_a_stack_trace(client, body, message):
    answer = client.post("/api/recommend", json=body)
    assert 400 <= answer.status_code < 500
    assert set(answer.json()) == {"message"}
    assert re.search(message, answer.json()["message"]), answer.json()


def test_the_page_and_its_files_come_from_the_server_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/page.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace('http-equiv', '')  # nothing fetched from elsewhere
    for name in ("page.js", "page.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert "innerHTML" not in client.get("/static/page.js").text


def test_without_a_champion_the_page_says_why(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'empty.db'}"
    Tracker(tracking_uri=tracking_uri)
    with pytest.raises(LookupError, match="has no 'langptune' version with the alias 'champion'.*make demo"):
        load_registered(tracking_uri)
    with TestClient(create_app(lambda: ProfileWorkbench(load_registered(tracking_uri), None))) as client:
        status = wait_until_ready(client)
        assert not status["ready"] and "make demo" in status["error"]
        answer = client.get("/api/users/u1")
        assert answer.status_code == 400 and answer.json()["message"].startswith("The model could not be loaded: LookupError")


def test_a_chosen_version_loads_and_a_missing_one_says_so(home):
    assert load_registered(home.tracking_uri, version="1").uri == "models:/langptune/1"
    with pytest.raises(LookupError, match="has no 'langptune' version 9: run the pipeline"):
        load_registered(home.tracking_uri, version="9")


def test_the_tables_of_a_missing_run_are_empty_with_a_note(tmp_path):
    tables = PageTables.load(Outputs(tmp_path), VARIANT)
    assert tables.examples.is_empty() and tables.zero_shot.is_empty() and tables.trained.is_empty()
    assert len(tables.notes) == 3 and "make demo" in tables.notes[0]


def test_the_page_ranks_through_the_served_models_predict(home):
    """No second ranking: the workbench's list is the pyfunc model's answer to the exported row."""
    workbench = home.workbench()
    ranking = workbench.recommend("Loves drama.", "u2")
    answer = workbench.served.model.predict(pd.DataFrame(ranking.export["dataframe_records"]))
    assert list(answer["item_ids"][0]) == [entry.item.item_id for entry in ranking.items]
