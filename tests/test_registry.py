"""The registry flow on a real sqlite MLflow store: versions with lineage, the champion gate,
loading and serving the champion by alias from fresh processes."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import polars as pl
import pytest
from test_serving import build_parts

from lpt_core.serving import local_model_server, post_json, registry
from lpt_core.serving.pyfunc_model import MAX_ROWS_PER_REQUEST, save_servable_model
from lpt_core.tracking import Tracker

USERS = 12


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A sqlite store, and two different servable models: "good" (encoder seed 0), "other" (seed 1)."""
    root = tmp_path_factory.mktemp("registry")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    models = {
        name: save_servable_model(build_parts(root / f"parts-{name}", encoder_seed=seed), root / f"model-{name}")
        for name, seed in (("good", 0), ("other", 1))
    }
    return {"tracker": Tracker(tracking_uri=tracking_uri), "tracking_uri": tracking_uri, "models": models}


@pytest.fixture(scope="module")
def examples(store) -> pl.DataFrame:
    """Evaluation rows whose target is the "good" model's own first pick: it ranks every target
    first, the other model rarely does, so "good" wins clearly over "other" and not vice versa."""
    import mlflow.pyfunc

    rng = np.random.default_rng(0)
    histories = [[str(i) for i in rng.choice(np.arange(1, 31), size=3, replace=False)] for _ in range(USERS)]
    ratings = [[float(r) for r in rng.integers(1, 6, size=3)] for _ in range(USERS)]
    good = mlflow.pyfunc.load_model(str(store["models"]["good"]))
    picks = good.predict(pd.DataFrame({"history_item_ids": histories, "history_ratings": ratings, "k": [1] * USERS}))
    return pl.DataFrame({
        "user_id": [f"u{u}" for u in range(USERS)],
        "history_item_ids": histories,
        "history_ratings": ratings,
        "target_item_id": [ids[0] for ids in picks["item_ids"]],
    })


def _register(store: dict, name: str, run_tag: str):
    tracker: Tracker = store["tracker"]
    parent = tracker.parent_run(run_tag, name=run_tag)
    training = tracker.child_run(parent, f"training/{name}")
    with tracker.child_run(parent, "registered_model") as run:
        lineage = registry.Lineage(
            run_tag, recipe_hash="abc123", variant=name, training_hash="7ra1n", checkpoint=f"/checkpoints/{name}/phase-3",
            training_run_id=training.run_id, registering_run_id=run.run_id,
            data_digests={"examples_train": "d1g35t"}, metrics={"ndcg@10": 0.25},
        )
        return registry.register_challenger(tracker.client, store["models"][name], lineage)


@pytest.fixture(scope="module")
def gated(store, examples) -> dict:
    """Three versions through the gate: "other" (no champion yet), "good" (a clear win over it),
    "other" again (a clear loss to "good")."""
    client = store["tracker"].client
    outcome = {}
    for step, name in enumerate(("other", "good", "other_again"), start=1):
        version = _register(store, name.removesuffix("_again"), f"orchestration-{step}")
        decision = registry.gate_challenger(client, version.version, examples, samples=200)
        outcome[name] = {"version": str(version.version), "decision": decision, "champion": registry.current_champion(client)}
    return outcome


def test_the_first_version_becomes_champion(gated):
    first = gated["other"]
    assert first["decision"].promoted and first["decision"].champion_version is None
    assert first["champion"] == first["version"]


def test_a_significant_win_moves_champion(gated):
    better = gated["good"]["decision"]
    assert better.promoted and better.champion_version == gated["other"]["version"]
    assert better.challenger.mean == pytest.approx(1.0) and better.difference.low > 0
    assert gated["good"]["champion"] == gated["good"]["version"]


def test_no_win_leaves_champion_and_keeps_the_challenger_alias(store, gated):
    worse = gated["other_again"]["decision"]
    assert not worse.promoted and worse.difference.high < 0 and "no significant win" in worse.reason
    assert gated["other_again"]["champion"] == gated["good"]["version"]
    challenger = store["tracker"].client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER)
    assert str(challenger.version) == gated["other_again"]["version"]


def test_versions_carry_their_lineage(store, gated):
    client = store["tracker"].client
    version = client.get_model_version(registry.MODEL_NAME, gated["good"]["version"])
    tags = version.tags
    assert tags["lpt.orchestration_run_id"] == "orchestration-2"
    assert tags["lpt.recipe_hash"] == "abc123" and tags["lpt.data_digest.examples_train"] == "d1g35t"
    assert tags["lpt.variant"] == "good" and tags["lpt.metric.ndcg_at_10"] == "0.25"
    assert tags["lpt.training_hash"] == "7ra1n" and tags["lpt.checkpoint"] == "/checkpoints/good/phase-3"
    # The model is logged to the registering run, and the training run is a different one.
    assert tags["lpt.mlflow_run.registering"] == version.run_id
    assert client.get_run(version.run_id).data.tags["lpt.asset"] == "registered_model"
    assert client.get_run(tags["lpt.mlflow_run.training"]).data.tags["lpt.asset"] == "training/good"


def test_target_ranks_splits_more_examples_than_one_request_takes(store, examples):
    import mlflow.pyfunc

    many = pl.concat([examples] * 3)
    assert many.height > MAX_ROWS_PER_REQUEST
    good = mlflow.pyfunc.load_model(str(store["models"]["good"]))
    np.testing.assert_array_equal(registry.target_ranks(good, many), 1.0)


def test_equal_ranks_are_no_win():
    ranks = np.array([1.0, 3.0, 12.0, 2.0])
    decision = registry.decide("m", "2", "1", ranks, ranks.copy(), ["a", "b", "c", "d"], samples=100)
    assert not decision.promoted and decision.difference.low == decision.difference.high == 0


def test_mlflow_models_serve_answers_for_the_champion(store, gated):
    """The server is a fresh process that loads models:/langptune@champion from the store named by
    MLFLOW_TRACKING_URI (what `mlflow.pyfunc.load_model` does there), then answers requests."""
    import mlflow.pyfunc

    answers = check_server_answers_good_and_bad_requests("models:/langptune@champion", store["tracking_uri"])
    good = mlflow.pyfunc.load_model(str(store["models"]["good"]))
    expected = good.predict(pd.DataFrame({"profile": ["loves comedy films"], "k": [2]}))["item_ids"][0]
    assert answers[1]["item_ids"] == list(expected)


def check_server_answers_good_and_bad_requests(model_uri: str, tracking_uri: str | None) -> list[dict]:
    """Good requests get recommendations, bad ones a 400 naming the row and the problem, and the
    server lives on; once stopped, it no longer listens. Returns the answers to the good requests:
    a history row, then the profile "loves comedy films" with k=2."""
    with local_model_server(model_uri, tracking_uri) as base:
        # Rows may have different keys: a key a row lacks, or null, is "not given" (k: the default).
        status, body = post_json(f"{base}/invocations", {"dataframe_records": [
            {"history_item_ids": ["1", "2"], "history_ratings": [5, 3.5], "k": 3},
            {"profile": "loves comedy films", "k": 2},
            {"profile": "dark horror", "k": None},
        ]})
        assert status == 200, body
        predictions = body["predictions"]
        assert [len(p["item_ids"]) for p in predictions] == [3, 2, 10]
        assert predictions[1]["profile"] == "loves comedy films" and len(predictions[1]["titles"]) == 2
        good_row = {"profile": "comedy"}
        bad_requests = [
            ([{"history_item_ids": ["1", "nope"]}], "row 0: unknown item ids"),
            ([{"history_item_ids": []}], "row 0: history_item_ids is empty"),
            ([{"profile": "comedy " * 200}], "row 0: profile is too long"),
            ([good_row, {"profile": "comedy", "k": "ten"}], "row 1: k must be a whole number"),
            ([good_row, {"history_item_ids": [1, 2]}], "row 1: history_item_ids[0] must be a string"),
            ([{"profile": 42}], "row 0: profile must be a string"),
            ([{"history_item_ids": ["1"], "history_ratings": [50]}], "row 0: history_ratings[0] is 50, outside"),
            ([good_row] * (MAX_ROWS_PER_REQUEST + 1), f"at most {MAX_ROWS_PER_REQUEST}: split the request"),
            ([{"profle": "Loves horror", "history_item_ids": ["1"]}], "row 0: unknown key 'profle'; accepted keys"),
            ([{"profile": "comedy", "K": 3}], "row 0: unknown key 'K'"),
        ]
        for rows, message in bad_requests:
            status, body = post_json(f"{base}/invocations", {"dataframe_records": rows})
            assert status == 400, (rows, body)
            # The error first and short, not after the input table (issue 31.11).
            assert message in body["message"][:120] and len(body["message"]) < 300, (rows, body)
        status, body = post_json(f"{base}/invocations", {"dataframe_records": [{"profile": "dark horror"}]})
        assert status == 200 and len(body["predictions"][0]["item_ids"]) == 10
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=2).close()
    return predictions[:2]
