"""The tracker on a real sqlite MLflow store (no server): run layout, logging, lineage, status."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests draw no window
import matplotlib.pyplot as plt
import polars as pl
import pytest

from lpt_core.tracking import (
    ASSET_TAG,
    DATASET_ROLE_TAG,
    MAX_PARAM_VALUE_LENGTH,
    ORCHESTRATION_RUN_TAG,
    PARENT_RUN_TAG,
    Tracker,
    frame_digest,
    mlflow_metric_name,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def tracker(store: Path) -> Tracker:
    # One store for the module: creating an MLflow sqlite schema takes a second or two.
    uri = f"sqlite:///{store / 'mlflow.db'}"
    return Tracker(uri, experiment="test", artifact_root=store / "art")


def _orchestration_id() -> str:
    return str(uuid.uuid4())


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "history": [["a", "b"], ["c"], []],
            "rating": [1.0, 2.5, None],
        }
    )


def _runs_tagged(tracker: Tracker, tag: str, value: str) -> list:
    return tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`{tag}` = '{value}'"
    )


def _artifact_text(tracker: Tracker, run_id: str, path: str, into: Path) -> str:
    local = tracker.client.download_artifacts(run_id, path, str(into))
    return Path(local).read_text()


def test_parent_and_two_children_hold_params_metrics_artifacts_and_datasets(
    tracker: Tracker, store: Path, tmp_path: Path
):
    parent = tracker.parent_run(_orchestration_id(), name="job:1", tags={"lpt.recipe": "quick"})
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    examples = _frame()
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])

    with tracker.child_run(parent, "cleaned_histories", tags={"team": "recsys"}) as cleaned:
        cleaned.log_params({"data": {"k_core": 5, "source": "movielens_100k"}, "seed": 0})
        cleaned.log_params({"notes": "x" * (MAX_PARAM_VALUE_LENGTH + 50)})
        cleaned.log_metrics({"cleaned_interactions": 1200})
        cleaned.log_text("kept 1200 rows", "cleaning_report.md")
        cleaned.log_dataset(
            examples, name="cleaned_histories", source="raw_interactions", context="cleaned"
        )
    with tracker.child_run(parent, "evaluation_report") as evaluation:
        evaluation.log_metrics({"ndcg@10": 0.25, "recall@20": 0.5}, step=3)
        evaluation.log_dict({"ndcg@10": 0.25}, "report.json")
        evaluation.log_figure(figure, "plots/curve.png")
        evaluation.log_artifact(report, "reports")
        for split, rows in (("train", examples.head(2)), ("test", examples.tail(1))):
            evaluation.log_dataset(rows, f"examples_{split}", source="x.parquet", context=split)
    plt.close(figure)

    children = _runs_tagged(tracker, PARENT_RUN_TAG, parent)
    assert {r.data.tags[ASSET_TAG] for r in children} == {"cleaned_histories", "evaluation_report"}
    assert tracker.client.get_run(parent).data.tags["lpt.recipe"] == "quick"

    first = tracker.client.get_run(cleaned.run_id)
    assert first.info.status == "FINISHED"
    assert first.data.tags["team"] == "recsys"
    assert first.data.params["data.k_core"] == "5"
    assert first.data.params["data.source"] == "movielens_100k"
    assert first.data.params["seed"] == "0"
    assert len(first.data.params["notes"]) == MAX_PARAM_VALUE_LENGTH
    assert first.data.metrics == {"cleaned_interactions": 1200.0}
    assert _artifact_text(tracker, cleaned.run_id, "cleaning_report.md", tmp_path) == (
        "kept 1200 rows"
    )
    (lineage,) = first.inputs.dataset_inputs
    assert lineage.dataset.name == "cleaned_histories"
    assert lineage.dataset.digest == frame_digest(examples)
    assert json.loads(lineage.dataset.profile)["num_rows"] == 3
    assert {(t.key, t.value) for t in lineage.tags} == {("mlflow.data.context", "cleaned"), (DATASET_ROLE_TAG, "input")}

    second = tracker.client.get_run(evaluation.run_id)
    assert second.data.metrics == {"ndcg_at_10": 0.25, "recall_at_20": 0.5}
    history = tracker.client.get_metric_history(evaluation.run_id, "ndcg_at_10")
    assert [m.step for m in history] == [3]
    assert json.loads(_artifact_text(tracker, evaluation.run_id, "report.json", tmp_path)) == {
        "ndcg@10": 0.25
    }
    assert _artifact_text(tracker, evaluation.run_id, "reports/report.md", tmp_path) == "# report\n"
    # Artifacts land under the configured root, not in the working folder.
    png = store / "art" / evaluation.run_id / "artifacts" / "plots" / "curve.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    contexts = {i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in second.inputs.dataset_inputs}
    assert contexts == {"examples_train": "train", "examples_test": "test"}


def test_parent_and_child_runs_are_found_again_not_duplicated(tracker: Tracker):
    orchestration_id = _orchestration_id()
    parent = tracker.parent_run(orchestration_id, name="job")
    assert tracker.parent_run(orchestration_id, name="job") == parent
    assert tracker.parent_run(_orchestration_id(), name="job") != parent

    with tracker.child_run(parent, "user_examples") as first:
        first.log_params({"seed": 0})
    with tracker.child_run(parent, "user_examples") as again:
        again.log_params({"seed": 0})  # a re-materialisation logs the same params again
    assert again.run_id == first.run_id
    assert tracker.child_run(parent, "item_catalog").run_id != first.run_id

    parents = _runs_tagged(tracker, ORCHESTRATION_RUN_TAG, orchestration_id)
    assert [run.info.run_id for run in parents] == [parent]
    assert len(_runs_tagged(tracker, PARENT_RUN_TAG, parent)) == 2
    assert tracker.client.get_run(first.run_id).info.status == "FINISHED"


def test_an_exception_marks_the_run_failed_and_propagates(tracker: Tracker):
    parent = tracker.parent_run(_orchestration_id(), name="job")
    with pytest.raises(RuntimeError, match="boom"):
        with tracker.child_run(parent, "trained_generator") as run:
            raise RuntimeError("boom")
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"

    tracker.end_run(parent, failed=True)
    assert tracker.client.get_run(parent).info.status == "FAILED"


def test_an_interrupt_marks_the_run_killed(tracker: Tracker):
    parent = tracker.parent_run(_orchestration_id(), name="job")
    with pytest.raises(KeyboardInterrupt):
        with tracker.child_run(parent, "trained_generator") as run:
            raise KeyboardInterrupt
    assert tracker.client.get_run(run.run_id).info.status == "KILLED"


def test_run_url_points_at_the_experiment_and_run(tracker: Tracker):
    run = tracker.child_run(tracker.parent_run(_orchestration_id(), name="job"), "item_index")
    expected = f"http://ui:5000/#/experiments/{tracker.experiment_id}/runs/{run.run_id}"
    assert run.url("http://ui:5000/") == expected
    assert run.url().startswith("http://127.0.0.1:5000/#/experiments/")


def test_unusable_arguments_are_named(tracker: Tracker):
    with pytest.raises(ValueError, match="orchestration_run_id"):
        tracker.parent_run("it's", name="job")
    run = tracker.child_run(tracker.parent_run(_orchestration_id(), name="job"), "raw_items")
    with pytest.raises(ValueError, match="dagster://raw"):
        run.log_dataset(_frame(), name="raw", source="dagster://raw", context="raw")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        run.log_artifact(Path("missing.txt"))


def test_default_store_and_artifacts_live_in_the_work_folder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LPT_HOME", str(tmp_path))
    tracker = Tracker()
    assert tracker.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    run = tracker.child_run(tracker.parent_run("dagster-run", name="job"), "raw_items")
    run.log_text("hello", "note.txt")
    assert (tmp_path / "mlflow" / "artifacts" / run.run_id / "artifacts" / "note.txt").exists()


def test_metric_names_are_made_valid_for_mlflow():
    assert mlflow_metric_name("ndcg@10") == "ndcg_at_10"
    assert mlflow_metric_name("val/mrr@5 (boot):lo") == "val/mrr_at_5 _boot__lo"
    assert mlflow_metric_name("loss") == "loss"


def test_param_length_limit_matches_mlflow():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert MAX_PARAM_VALUE_LENGTH == MAX_PARAM_VAL_LENGTH


def test_frame_digest_depends_on_content_only():
    digest = frame_digest(_frame())
    assert frame_digest(_frame()) == digest
    assert frame_digest(_frame().reverse()) == digest  # row order is not content
    assert len(digest) == 32
    changed = pl.when(pl.col("user_id") == "u2").then(pl.lit(2.0)).otherwise("rating")
    one_cell = _frame().with_columns(changed.alias("rating"))
    assert frame_digest(one_cell) != digest
    assert frame_digest(_frame().with_columns(pl.col("rating").cast(pl.Float32))) != digest
    assert frame_digest(_frame().rename({"rating": "score"})) != digest
    assert frame_digest(_frame().head(0)) != frame_digest(_frame().head(0).drop("rating"))
