"""Training launched in several processes from the training asset (lpt_core.training.launch): a real
Dagster materialisation of trained_generator on the tiny pipeline with training.launch.processes 2,
torchrun starting two CPU processes (gloo) as a subprocess; and the launch errors that name their
setting."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest
from mlflow.tracking import MlflowClient
from test_assets import Materialised, TinyRun
from tiny_pipeline import pipeline_resources, write_movielens_fixture, write_recipe

from lpt_core.config import RecipeError, load_recipe
from lpt_core.training.alternation import LoggingCallbacks
from lpt_core.training.launch import LaunchedRunFailed, LaunchError, check_launch, run_launched

VARIANT = "langptune_rebel"
# How the second process's progress lines from lpt_core.training.alternation read.
OTHER_PROCESS = "INFO rank 1/2 lpt_core.training.alternation: "


@pytest.fixture(scope="module")
def launched(tmp_path_factory, tiny_models) -> Iterator[tuple[TinyRun, Materialised, list]]:
    """trained_generator materialised with two processes: the run, its value and its log entries."""
    root = tmp_path_factory.mktemp("launched")
    data_dir = write_movielens_fixture(root / "ml")
    overrides = {"training": {"variants": [VARIANT], "launch": {"processes": 2, "launcher": "torchrun"}}}
    recipe_path = write_recipe(root, data_dir, tiny_models, overrides)
    with pytest.MonkeyPatch.context() as monkeypatch:
        run = TinyRun(pipeline_resources(root, recipe_path, monkeypatch))
        generators = run.materialise("trained_generator")
        (training_run,) = run.instance.get_runs(limit=1)
        yield run, generators, [entry for entry in run.instance.all_logs(training_run.run_id) if entry.user_message]


def test_trained_generator_trained_in_two_processes_is_read_back_from_their_checkpoint(launched):
    run, generators, _ = launched
    trained = generators.value[VARIANT]
    assert trained.checkpoint.is_dir() and trained.adapter_dir.is_dir()
    assert trained.checkpoint.parent == run.resources["workspace"].outputs.training(VARIANT)
    summary = generators.metadata["variants"].data[VARIANT]
    assert summary["resumed_from"] is None  # a fresh run, as the launched run reported it
    assert (summary["last_phase"]["round"], summary["last_phase"]["phase"]) == (0, "encoder")
    # The launched main process's metrics reached the variant's MLflow run, step by step.
    client = MlflowClient(run.tracking_uri)
    assert client.get_run(trained.mlflow_run_id).info.status == "FINISHED"
    assert client.get_metric_history(trained.mlflow_run_id, "decoder.loss")
    assert client.get_metric_history(trained.mlflow_run_id, "encoder.reward_mean")


def test_the_run_log_shows_both_processes_progress_as_it_comes(launched):
    _, generators, entries = launched
    messages = [entry.user_message for entry in entries]
    (command,) = [m for m in messages if "launching 2 processes" in m]
    assert "torch.distributed.run --standalone --nproc_per_node 2 -m lpt_core.cli train" in command
    checkpoint = generators.value[VARIANT].checkpoint
    # The second process's own progress, tagged with its rank by `lpt train`.
    other = {m.split(OTHER_PROCESS, 1)[1]: entry for entry in entries if OTHER_PROCESS in (m := entry.user_message)}
    assert {"round 0 decoder phase: start", "profiles 10/10", "round 0 encoder phase: start",
            f"round 0 encoder phase: done, checkpoint {checkpoint}"} <= other.keys()
    # The main process's progress, forwarded as its callbacks, and its own log lines.
    assert f"{VARIANT}: round 0 encoder phase: done, checkpoint {checkpoint}" in messages
    assert any(m.startswith(f"{VARIANT} round 0 encoder step 1: {{'encoder.reward_mean'") for m in messages)
    assert any("rank 0/2 lpt_core.training.algorithms.rebel: REBEL update 1/1" in m for m in messages)
    # Streamed as it came: the second process's first line was in the run log before that process
    # wrote its last one.
    last = other[f"round 0 encoder phase: done, checkpoint {checkpoint}"].user_message
    last_written = datetime.strptime(last.split(f"{VARIANT}: ", 1)[1][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert other["round 0 decoder phase: start"].timestamp < last_written


def test_a_batch_that_does_not_split_over_the_processes_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"training.rl.prompts_per_update 3 does not split evenly over training.launch.processes 2"):
        load_recipe("quick", {"training": {"launch": {"processes": 2}, "rl": {"prompts_per_update": 3}}})


def test_more_processes_than_cpu_cores_names_the_setting():
    cores = len(os.sched_getaffinity(0))
    training = {"launch": {"processes": cores + 1}, "rl": {"prompts_per_update": cores + 1}}
    recipe = load_recipe("quick", {"models": {"device": "cpu"}, "training": training})
    with pytest.raises(LaunchError, match=rf"training.launch.processes is {cores + 1}, but this machine has {cores} CPU cores"):
        check_launch(recipe)


def zero2_recipe(max_backtracks: int):
    launch = {"processes": 2, "launcher": "accelerate", "accelerate_config": "configs/accelerate/zero2.yaml"}
    rl = {"prompts_per_update": 2, "algorithm": {"name": "rebel", "max_backtracks": max_backtracks}}
    return load_recipe("quick", {"models": {"device": "cpu"}, "training": {"launch": launch, "rl": rl}})


def test_rebel_backtracking_under_deepspeed_names_the_setting():
    with pytest.raises(LaunchError, match="training.rl.algorithm.max_backtracks 4: .* DeepSpeed's ZeRO optimizer"):
        check_launch(zero2_recipe(max_backtracks=4))


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_a_deepspeed_config_without_deepspeed_names_the_setting():
    with pytest.raises(LaunchError, match="training.launch.accelerate_config configs/accelerate/zero2.yaml uses DeepSpeed"):
        check_launch(zero2_recipe(max_backtracks=0))


def test_a_launched_run_that_fails_is_an_error_quoting_its_last_lines():
    failing = [sys.executable, "-c", "import sys; print('loaded'); sys.exit('no split materialised')"]
    with pytest.raises(LaunchedRunFailed, match="exited with code 1; its last lines:") as failure:
        run_launched(failing, LoggingCallbacks())
    # stdout and stderr, in whichever order they arrived
    assert {"loaded", "no split materialised"} <= set(str(failure.value).splitlines()[1:])
