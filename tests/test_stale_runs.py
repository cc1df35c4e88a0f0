"""A run whose process died keeps its pool slot until stale_runs reports it failed and frees it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.events import EngineEventData  # not in the public namespace; what executors write

from lpt_dagster.stale_runs import fail_stale_runs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_in_process(instance: dg.DagsterInstance, pid: int, step: str) -> str:
    """A STARTED run that says it executes in `pid`, holding the "gpu" slot for `step`, as a
    `dg launch` run does while one of its gpu steps runs."""
    run = instance.add_run(dg.DagsterRun(job_name="langptune_pipeline", status=dg.DagsterRunStatus.STARTED))
    instance.report_engine_event(
        f"Executing steps in process (pid: {pid})", run,
        EngineEventData(metadata={"pid": dg.MetadataValue.text(str(pid))}),
    )
    assert instance.event_log_storage.claim_concurrency_slot("gpu", run.run_id, step).is_claimed
    return run.run_id


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_runs_slot_is_freed_and_a_live_run_is_left_alone(tmp_path):
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 2)
        dead = _run_in_process(instance, _dead_pid(), "evaluation_report")
        live = _run_in_process(instance, os.getpid(), "baseline_models")

        assert fail_stale_runs(instance) == [dead]

        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED
        claimed = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        assert [(slot.run_id, slot.step_key) for slot in claimed] == [(live, "baseline_models")]
        assert fail_stale_runs(instance) == []  # a second pass finds nothing more
