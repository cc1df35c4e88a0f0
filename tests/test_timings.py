"""Per-step wall times read back from a real Dagster instance (sqlite, in a temporary folder) after
real in-process runs of a few tiny assets."""

import time

import dagster as dg
import pytest

from lpt_dagster import timings

JOB = "tiny_job"
NAP_SECONDS = 0.2


@dg.asset
def first() -> int:
    time.sleep(NAP_SECONDS)
    return 1


@dg.multi_asset(outs={"left": dg.AssetOut(), "right": dg.AssetOut()})
def both_sides(first: int) -> tuple[int, int]:
    return first, first + 1


@dg.asset
def last(left: int, right: int) -> int:
    time.sleep(NAP_SECONDS)
    return left + right


@dg.asset
def broken(first: int) -> int:
    raise RuntimeError("this asset always fails")


@dg.asset
def after_broken(broken: int) -> int:
    return broken


@dg.multi_asset(outs={"made": dg.AssetOut(), "not_made": dg.AssetOut(is_required=False)})
def makes_one_of_two(first: int):
    yield dg.Output(first, output_name="made")


@dg.asset
def after_not_made(not_made: int) -> int:
    return not_made


def execute(instance: dg.DagsterInstance, *assets: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(assets=list(assets), jobs=[dg.define_asset_job(JOB)]).resolve_job_def(JOB)
    return job.execute_in_process(instance=instance, raise_on_error=False)


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_steps_in_start_order_with_their_assets_and_times_within_the_run(instance):
    execute(instance, first, both_sides, last)  # an older run, which the default must not pick
    result = execute(instance, first, both_sides, last)
    assert result.success
    assert timings.latest_run_id(instance, JOB) == result.run_id

    run = timings.run_timings(instance, result.run_id)
    assert [step.name for step in run.steps] == ["first", "both_sides", "last"]
    assert [step.assets for step in run.steps] == [("first",), ("left", "right"), ("last",)]
    assert {step.status for step in run.steps} == {"SUCCESS"} and run.total.status == "SUCCESS"
    starts = [step.start for step in run.steps]
    assert starts == sorted(starts) and run.total.start <= starts[0]
    assert all(step.end <= run.total.end for step in run.steps)
    step_seconds = [step.seconds for step in run.steps]
    assert all(seconds >= 0 for seconds in step_seconds)
    assert step_seconds[0] >= NAP_SECONDS and step_seconds[2] >= NAP_SECONDS
    # The in-process executor runs one step at a time: the steps fit inside the run.
    assert 2 * NAP_SECONDS <= sum(step_seconds) <= run.total.seconds


def test_a_failed_step_and_the_step_it_stopped(instance):
    result = execute(instance, first, broken, after_broken)
    assert not result.success

    run = timings.run_timings(instance, result.run_id)
    statuses = {step.name: step.status for step in run.steps}
    assert statuses["first"] == "SUCCESS" and statuses["broken"] == "FAILURE"
    assert run.total.status == "FAILURE" and run.total.seconds >= 0
    broken_step = next(step for step in run.steps if step.name == "broken")
    assert broken_step.assets == () and broken_step.seconds >= 0
    assert run.steps[0].name == "first"


def test_the_entry_point_prints_the_latest_run_as_a_table(instance, capsys):
    result = execute(instance, first, both_sides, last)
    assert timings.main(["--job", JOB]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Wall time per step of run {result.run_id} ({JOB}):"
    assert lines[1].split()[:6] == ["step", "status", "start", "end", "seconds", "share"]
    assert [line.split()[0] for line in lines[2:5]] == ["first", "both_sides", "last"]
    assert lines[3].endswith("left, right"), "a multi-asset's row names its assets"
    assert lines[5].startswith("run total") and lines[5].split()[2] == "SUCCESS"


def test_the_entry_point_says_when_the_job_never_ran(instance, capsys):
    assert timings.main(["--job", JOB]) == 1
    assert "no run of tiny_job" in capsys.readouterr().err


def test_a_skipped_step_has_no_start_and_comes_last(instance):
    result = execute(instance, first, makes_one_of_two, after_not_made)
    assert result.success

    run = timings.run_timings(instance, result.run_id)
    assert [(step.name, step.status) for step in run.steps] == [
        ("first", "SUCCESS"), ("makes_one_of_two", "SUCCESS"), ("after_not_made", "SKIPPED")
    ]
    skipped = run.steps[-1]
    assert skipped.start is None and skipped.end is not None and skipped.seconds is None
    assert run.steps[1].assets == ("made",)
