"""The Dagster pipeline end to end on a tiny fixture: real Dagster runs, real MLflow store, real
faiss index, tiny random models built in code (no download)."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from tiny_pipeline import pipeline_resources, write_movielens_fixture, write_recipe

from lpt_core.generation import make_generator
from lpt_core.tracking import DATASET_ROLE_TAG, STEP_TAG
from lpt_dagster import definitions
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import WorkspaceResource
from lpt_dagster.values import TrainedGenerator, TrainedGenerators


def run_pipeline(tmp_path: Path, recipe_path: Path, monkeypatch) -> tuple[dg.ExecuteInProcessResult, str]:
    resources = pipeline_resources(tmp_path, recipe_path, monkeypatch)
    defs = dg.Definitions(
        assets=definitions.all_assets, asset_checks=definitions.all_checks, jobs=[definitions.pipeline_job],
        resources=resources,
    )
    job = defs.resolve_job_def("langptune_pipeline")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result, resources["mlflow"].tracking_uri


def logged_datasets(client: MlflowClient, run_id: str) -> dict[str, str]:
    """The datasets an MLflow run logged: name -> digest."""
    return {logged.dataset.name: logged.dataset.digest for logged in client.get_run(run_id).inputs.dataset_inputs}


def tables_read(client: MlflowClient, run_id: str) -> set[str]:
    """The assets whose tables an MLflow run logged as read (role "input"). A dataset is named
    after its asset, but for the rows of user_examples it logs (one split, the assessed rows)."""
    return {
        "user_examples" if logged.dataset.name.startswith(("examples_", "assessed_")) else logged.dataset.name
        for logged in client.get_run(run_id).inputs.dataset_inputs
        if {tag.key: tag.value for tag in logged.tags}[DATASET_ROLE_TAG] == "input"
    }


def check_every_step_logs_the_tables_it_reads(client: MlflowClient, runs: list, stored: LocalFilesIOManager) -> None:
    """For each table (an asset stored as a polars frame), the runs of the steps that declare it as
    an input are exactly the runs that log it as a dataset input (issue 31.14: user_examples did
    not log cleaned_histories, item_index and baseline_models logged nothing). Asset checks are
    not steps with runs: beats_champion reads user_examples and logs no MLflow run."""
    graph = definitions.defs.resolve_asset_graph()
    tables = {
        key.to_user_string() for key in graph.get_all_asset_keys()
        if isinstance(stored.load_input(dg.build_input_context(asset_key=key)), pl.DataFrame)
    }
    assert {"raw_interactions", "cleaned_items", "user_examples", "item_catalog", "trained_profiles"} <= tables
    readers = {table: set() for table in tables}
    for assets_def in graph.assets_defs:
        for key in assets_def.dependency_keys - set(assets_def.keys):
            if key.to_user_string() in tables:
                readers[key.to_user_string()].add(assets_def.op.name)
    read_by_run = {run.info.run_id: (run.data.tags[STEP_TAG], tables_read(client, run.info.run_id)) for run in runs}
    for table, steps in readers.items():
        logging = {run_id for run_id, (_, read) in read_by_run.items() if table in read}
        declaring = {run_id for run_id, (step, _) in read_by_run.items() if step in steps}
        assert logging == declaring, (table, steps, {read_by_run[r][0] for r in logging})


def test_definitions_load():
    graph = definitions.defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {
        "raw_interactions", "raw_items", "cleaned_histories", "cleaned_items", "user_examples",
        "item_catalog", "zero_shot_profiles", "item_index", "evaluation_report",
    } <= keys
    assert definitions.defs.resolve_job_def("langptune_pipeline") is not None
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert {"raw_interactions", "cleaned_histories", "cleaned_items", "user_examples"} <= checked


def test_pipeline_materialises_every_asset_and_tracks_it(tmp_path, tiny_models, monkeypatch):
    data_dir = write_movielens_fixture(tmp_path / "ml")
    before = {p: p.read_bytes() for p in data_dir.iterdir()}
    result, tracking_uri = run_pipeline(tmp_path, write_recipe(tmp_path, data_dir, tiny_models), monkeypatch)
    assert result.success

    materialised = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert "evaluation_report" in materialised and "zero_shot_profiles" in materialised
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)

    stored = LocalFilesIOManager(workspace=WorkspaceResource(root=str(tmp_path / "outputs")))
    evaluation = stored.load_input(dg.build_input_context(asset_key=dg.AssetKey("evaluation_report")))
    report = json.loads((evaluation.folder / "report.json").read_text())
    # The value the registry reads holds the report's intervals, typed.
    assert {name: {key: interval.as_dict() for key, interval in metrics.items()}
            for name, metrics in evaluation.methods.items()} == report["methods"]
    assert set(report["methods"]) == {
        "random", "popularity", "item_knn", "sasrec", "last_item_text", "history_text", "profile",
        "profile_mean", "langptune_rebel", "langptune_grpo", "cl_only", "rl_only", "langptune_item_bias",
    }
    assert "langptune_rebel - profile" in report["differences"]
    for metrics in report["methods"].values():
        assert 0.0 <= metrics["ndcg@10"]["low"] <= metrics["ndcg@10"]["mean"] <= metrics["ndcg@10"]["high"] <= 1.0
    for name in ("report.md", "report.json", "metrics.png"):
        assert (tmp_path / "outputs" / "evaluation_report" / name).is_file()
    # Every file the run wrote is under the workspace root: nothing in the work folder's outputs/.
    assert not (tmp_path / "lpt" / "outputs").exists()
    written = {path.name for path in (tmp_path / "outputs").iterdir()}
    assert {"item_index", "baseline_models", "training", "trained_item_index", "evaluation_report",
            "profile_quality_report", "profile_store.parquet", "user_examples.parquet", "item_index.json"} <= written

    # Raw data is never modified.
    assert {p: p.read_bytes() for p in data_dir.iterdir()} == before

    client = MlflowClient(tracking_uri)
    runs = client.search_runs(client.get_experiment_by_name("langptune").experiment_id)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["lpt.asset"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and parents[0].data.tags["lpt.orchestration_run_id"] == result.run_id
    assert parents[0].info.status == "FINISHED"
    assert {"raw_data", "cleaned_histories", "user_examples", "zero_shot_profiles", "sampled_profiles", "item_index",
            "baseline_models", "evaluation_report", "training/langptune_rebel", "training/cl_only", "trained_profiles",
            "trained_item_index", "profile_quality_report", "registered_model"} <= set(children)
    rebel_metrics = client.get_run(children["training/langptune_rebel"].info.run_id).data.metrics
    assert "encoder.reward_mean" in rebel_metrics and "decoder.loss" in rebel_metrics
    evaluation = children["evaluation_report"]
    assert evaluation.data.params["split.history_len"] == "3"
    assert "profile.ndcg_at_10" in evaluation.data.metrics
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id, "evaluation_report")}
    assert "evaluation_report/report.json" in artifacts
    assert "langptune_rebel.mean_tokens" in children["trained_profiles"].data.metrics
    assert "langptune_rebel.items" in children["trained_item_index"].data.metrics
    assert children["sampled_profiles"].data.metrics["samples_per_example"] == 2

    # Lineage: every step logs the tables it wrote or read, and one table has one digest everywhere.
    check_every_step_logs_the_tables_it_reads(client, [r for r in runs if "mlflow.parentRunId" in r.data.tags], stored)
    datasets = {asset: logged_datasets(client, run.info.run_id) for asset, run in children.items()}
    assert set(datasets["user_examples"]) == {
        "cleaned_histories", "cleaned_items", "examples_train", "examples_val", "examples_test", "item_catalog"}
    assert set(datasets["item_index"]) == set(datasets["trained_item_index"]) == {"item_catalog"}
    assert set(datasets["training/langptune_rebel"]) == {
        "examples_train", "examples_val", "item_catalog", "cleaned_items", "cleaned_histories"}
    assert set(datasets["profile_quality_report"]) == {
        "assessed_examples", "item_catalog", "zero_shot_profiles", "trained_profiles"}
    digests = {}
    for logged in datasets.values():
        for name, digest in logged.items():
            digests.setdefault(name, set()).add(digest)
    assert all(len(seen) == 1 for seen in digests.values()), digests
    digest_of = {name: seen.pop() for name, seen in digests.items()}

    # The served model is registered, and as the first version it becomes the champion.
    champion = client.get_model_version_by_alias("langptune", "champion")
    assert str(champion.version) == "1"
    assert "lpt.quality.reader_accuracy" in champion.tags and "lpt.recipe_hash" in champion.tags
    # It traces back to the exact tables (the digests the steps logged), checkpoint and runs.
    traced = {"raw_interactions", "raw_items", "cleaned_histories", "examples_train", "examples_val",
              "examples_test", "item_catalog", "trained_profiles"}
    assert {name: champion.tags[f"lpt.data_digest.{name}"] for name in traced} == {name: digest_of[name] for name in traced}
    training = stored.load_input(dg.build_input_context(asset_key=dg.AssetKey("trained_generator")))["langptune_rebel"]
    assert champion.tags["lpt.checkpoint"] == str(training.checkpoint)
    assert champion.tags["lpt.training_hash"] == training.training_hash
    assert champion.tags["lpt.mlflow_run.training"] == children["training/langptune_rebel"].info.run_id
    assert champion.tags["lpt.mlflow_run.registering"] == champion.run_id == children["registered_model"].info.run_id

    # A second materialisation reuses the stored profiles and makes one new parent run, no orphans.
    second, _ = run_pipeline(tmp_path, write_recipe(tmp_path, data_dir, tiny_models), monkeypatch)
    assert second.success
    profile_event = [e for e in second.get_asset_materialization_events()
                     if e.asset_key.to_user_string() == "zero_shot_profiles"][0]
    assert profile_event.materialization.metadata["newly_generated"].value == 0
    # Its identical challenger does not beat the champion: the alias stays, the run still succeeds.
    gate = [c for c in second.get_asset_check_evaluations() if c.check_name == "beats_champion"][0]
    assert not gate.passed
    assert str(client.get_model_version_by_alias("langptune", "challenger").version) == "2"
    assert str(client.get_model_version_by_alias("langptune", "champion").version) == "1"
    runs = client.search_runs(client.get_experiment_by_name("langptune").experiment_id)
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 2
    assert len(runs) == 2 * (1 + len(children))


def test_failed_blocking_check_stops_downstream_assets(tmp_path, tiny_models, monkeypatch):
    data_dir = write_movielens_fixture(tmp_path / "ml", bad_rating_row=True)
    result, _ = run_pipeline(tmp_path, write_recipe(tmp_path, data_dir, tiny_models), monkeypatch)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["interactions_rating_range"]
    assert "7" in json.dumps(failed[0].metadata["details"].value)
    materialised = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert materialised == {"raw_interactions", "raw_items"}


def error_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The message of every step failure of a run and of each error it was caused by."""
    messages = []
    for failure in result.get_step_failure_events():
        error = failure.step_failure_data.error
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return messages


def test_trained_profiles_take_the_recipes_generation_backend(tmp_path, tiny_models, monkeypatch):
    """trained_profiles writes with the backend generation.backend names: vLLM on this CPU machine
    fails with the generator factory's own error (before any trained model is loaded)."""
    overrides = {"generation": {"backend": "vllm"}, "training": {"variants": ["langptune_rebel"]}}
    recipe_path = write_recipe(tmp_path, tmp_path / "no_data", tiny_models, overrides)
    resources = pipeline_resources(tmp_path, recipe_path, monkeypatch)
    cfg = resources["recipe"].get()
    with pytest.raises(Exception) as factory:
        make_generator(cfg.models.generator, cfg.models, cfg.generation)
    # The stored inputs trained_profiles reads; the adapter folder does not exist.
    stored = resources["io_manager"]
    stored.workspace.outputs.root.mkdir(parents=True)
    for name, frame in {"user_examples": pl.DataFrame({"user_id": ["u1"], "split": ["test"], "window": [0]}),
                        "cleaned_items": pl.DataFrame({"item_id": ["i1"]}),
                        "zero_shot_profiles": pl.DataFrame({"user_id": ["u1"]})}.items():
        frame.write_parquet(stored.workspace.outputs.table(name))
    trained = TrainedGenerator(
        adapter_dir=tmp_path / "no_adapter", base_model=cfg.models.generator, trains_generator=True,
        checkpoint=tmp_path / "round_0", training_hash="h", mlflow_run_id="r",
    )
    stored.handle_output(dg.build_output_context(asset_key=dg.AssetKey("trained_generator")),
                         TrainedGenerators({"langptune_rebel": trained}))

    result = dg.materialize(definitions.all_assets, selection=["trained_profiles"], resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    assert not result.success
    assert any(str(factory.value) in message for message in error_messages(result)), error_messages(result)
