"""Runs left "in progress" by a process that no longer exists: reported failed, their pool slots freed.

A run launched from the command line (`make demo`, `dg launch`) executes in that process. Killed
(Ctrl-C twice, a closed terminal, a machine that went away), it stays STARTED in run storage and
keeps the "gpu" pool slot of the step it was running; the next run's steps then wait for that slot
forever (the in-process executor polls for it at full CPU) and the run looks hung. The daemon's
run monitoring (dagster.yaml) only watches runs it launched, so `make demo` calls this first:

    python -m lpt_dagster.stale_runs

A run counts as stale when its executor wrote the pid it runs in (every executor's "Executing
steps in process (pid: N)" / "Started process for run (pid: N)" engine event) and none of those
pids is alive on this machine. Runs without a recorded pid (queued, or still starting) are left to
the daemon's start timeout.
"""

from __future__ import annotations

import os

import dagster as dg

_IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def fail_stale_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report every stale run failed and free its pool slots; returns their run ids."""
    stale = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_IN_PROGRESS)):
        pids = _executor_pids(instance, run.run_id)
        if pids and not any(_alive(pid) for pid in pids):
            instance.report_run_failed(
                run, f"The process running this run (pid {', '.join(map(str, sorted(pids)))}) no longer exists: "
                "reported failed and its pool slots freed, so later runs can take them."
            )
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            stale.append(run.run_id)
    return stale


def _executor_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    pids = set()
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) or {}
        if "pid" in metadata:
            pids.add(int(metadata["pid"].value))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_stale_runs(instance):
            print(f"run {run_id}: its process is gone; reported failed and its pool slots freed")


if __name__ == "__main__":
    main()
