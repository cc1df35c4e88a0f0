"""Jobs, schedule and the new-raw-data sensor: real Dagster sensor evaluations over a tmp folder,
and the definitions resolved the way the code location loads them."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from lpt_dagster import automation, definitions
from lpt_dagster.automation import NEW_FILE_TAG, WatchState, new_raw_data_sensor
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def inbox(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    monkeypatch.setenv(automation.WATCH_DIR_ENV, str(folder))
    return folder


class SensorTicks:
    """Evaluates the sensor tick after tick, carrying the cursor as the daemon does."""

    def __init__(self) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = new_raw_data_sensor(context)
        self.cursor = result.cursor
        return result


def new_files(result: dg.SensorResult) -> list[str]:
    return [Path(request.tags[NEW_FILE_TAG]).name for request in result.run_requests or []]


def test_each_new_file_starts_one_run_and_never_a_second(inbox):
    ticks = SensorTicks()
    (inbox / "reviews_1.jsonl").write_text('{"user_id": "u1"}\n')
    first = ticks.tick()
    assert new_files(first) == [] and "reviews_1.jsonl" in first.skip_reason.skip_message

    second = ticks.tick()
    assert new_files(second) == ["reviews_1.jsonl"]
    request = second.run_requests[0]
    assert request.tags[NEW_FILE_TAG] == str(inbox / "reviews_1.jsonl")
    assert json.loads(ticks.cursor)["processed"].keys() == {"reviews_1.jsonl"}

    (inbox / "reviews_2.jsonl").write_text('{"user_id": "u2"}\n')
    assert new_files(ticks.tick()) == []
    assert new_files(ticks.tick()) == ["reviews_2.jsonl"]
    for _ in range(3):
        assert new_files(ticks.tick()) == []
    state = json.loads(ticks.cursor)
    assert state["pending"] == {} and state["processed"].keys() == {"reviews_1.jsonl", "reviews_2.jsonl"}


def test_growing_and_partial_files_wait_until_complete(inbox):
    ticks = SensorTicks()
    growing = inbox / "reviews.jsonl"
    growing.write_text("line 1\n")
    ticks.tick()
    with growing.open("a") as handle:
        handle.write("line 2\n")
    assert new_files(ticks.tick()) == [], "a file that grew since the last tick is still being written"

    download = inbox / "meta.jsonl.part"
    download.write_text("half")
    (inbox / ".reviews.jsonl.XyZ12").write_text("rsync temp")
    (inbox / "ml-100k").mkdir()
    assert new_files(ticks.tick()) == ["reviews.jsonl"]
    assert new_files(ticks.tick()) == []

    download.rename(inbox / "meta.jsonl")
    assert new_files(ticks.tick()) == []
    assert new_files(ticks.tick()) == ["meta.jsonl"]


def test_replaced_file_runs_again_and_removed_file_is_forgotten(inbox):
    ticks = SensorTicks()
    export = inbox / "ratings.csv"
    export.write_text("user,item\n1,2\n")
    ticks.tick()
    first_key = ticks.tick().run_requests[0].run_key

    export.write_text("user,item\n1,2\n3,4\n")
    ticks.tick()
    replaced = ticks.tick()
    assert new_files(replaced) == ["ratings.csv"] and replaced.run_requests[0].run_key != first_key

    export.unlink()
    ticks.tick()
    assert json.loads(ticks.cursor) == {"processed": {}, "pending": {}}


def test_missing_folder_skips_and_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv(automation.WATCH_DIR_ENV, str(tmp_path / "nowhere"))
    result = SensorTicks().tick()
    assert not result.run_requests
    assert str(tmp_path / "nowhere") in result.skip_reason.skip_message


def test_watch_dir_default_and_relative_override(monkeypatch):
    monkeypatch.delenv(automation.WATCH_DIR_ENV, raising=False)
    assert automation.watch_dir() == REPO_ROOT / "data" / "raw" / "incoming"
    monkeypatch.setenv(automation.WATCH_DIR_ENV, "drops")
    assert automation.watch_dir() == REPO_ROOT / "drops"


def test_unreadable_cursor_is_an_error_that_shows_it():
    with pytest.raises(ValueError, match="not-json"):
        WatchState.from_cursor("not-json")


def automation_definitions() -> dg.Definitions:
    """The code location's assets and checks plus these jobs, schedule and sensor."""
    workspace = WorkspaceResource()
    return dg.Definitions(
        assets=definitions.all_assets,
        asset_checks=definitions.all_checks,
        jobs=[automation.pipeline_job, automation.retrain_job],
        schedules=[automation.weekly_retrain_schedule],
        sensors=[new_raw_data_sensor],
        resources={
            "recipe": RecipeResource(),
            "mlflow": MlflowResource(),
            "workspace": workspace,
            "io_manager": LocalFilesIOManager(workspace=workspace),
        },
    )


def test_schedule_is_weekly_stopped_and_retrains():
    defs = automation_definitions()
    schedule = defs.resolve_schedule_def("weekly_retrain")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 3 * * 1"
    assert schedule.job_name == automation.RETRAIN_JOB_NAME
    sensor = defs.resolve_sensor_def("new_raw_data")
    assert sensor.job_name == automation.PIPELINE_JOB_NAME
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_retrain_job_selects_training_and_everything_downstream():
    defs = automation_definitions()
    graph = defs.resolve_asset_graph()
    retrain = defs.resolve_job_def(automation.RETRAIN_JOB_NAME)
    retrained = {key.to_user_string() for key in retrain.asset_layer.selected_asset_keys}
    assert {
        "trained_generator", "trained_recommender", "trained_profiles", "trained_item_index",
        "evaluation_report", "registered_model",
    } <= retrained
    groups = {graph.get(dg.AssetKey(name)).group_name for name in retrained}
    assert groups <= {"training", "evaluation", "registry"}, "nothing upstream of training is recomputed"
    pipeline = defs.resolve_job_def(automation.PIPELINE_JOB_NAME)
    assert retrained < {key.to_user_string() for key in pipeline.asset_layer.selected_asset_keys}
    # The promotion gate runs with every retraining; the raw-data checks do not.
    check_names = {key.name for key in retrain.asset_layer.asset_graph.asset_check_keys}
    assert "beats_champion" in check_names and "interactions_rating_range" not in check_names


def test_gpu_assets_share_the_gpu_pool_limited_to_one(tmp_path):
    graph = automation_definitions().resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    for name in ("zero_shot_profiles", "item_index", "trained_generator", "trained_recommender",
                 "trained_profiles", "trained_item_index"):
        assert pools[name] == {"gpu"}, name

    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.event_log_storage.supports_global_concurrency_limits
        gpu = instance.event_log_storage.get_concurrency_info("gpu")
        assert gpu.limit == 1
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
