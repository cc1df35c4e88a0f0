"""Where the time of a run went: the wall time of each step, read back from the Dagster instance.

`make demo` prints it after the run (`python -m lpt_dagster.timings`); it reads the instance at
$DAGSTER_HOME, and by default the latest run of the pipeline job. Each row is one step: an asset,
the assets of a multi-asset, or a check; the times are those of its events (start to success,
failure or skip), so they include the step's own set-up (loading inputs, resources).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import dagster as dg

from lpt_dagster.automation import PIPELINE_JOB_NAME

if TYPE_CHECKING:
    from dagster._core.execution.stats import RunStepKeyStatsSnapshot


@dataclass(frozen=True)
class Timing:
    """One step of a run, or the whole run. `end` and `seconds` are None while it is unfinished;
    `start` is None for a step that was skipped without starting."""

    name: str
    status: str
    start: datetime | None
    end: datetime | None
    assets: tuple[str, ...] = ()

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class RunTimings:
    run_id: str
    job_name: str
    total: Timing
    steps: list[Timing]  # by start; steps that never started last


def _moment(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc)


def latest_run_id(instance: dg.DagsterInstance, job_name: str = PIPELINE_JOB_NAME) -> str | None:
    """The id of the job's most recently created run, or None if it has never run."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=1)
    return runs[0].run_id if runs else None


def _step_timing(stats: RunStepKeyStatsSnapshot) -> Timing:
    # The assets a step materialised name it better than its op name (a multi-asset's op).
    assets = tuple(
        sorted({entry.asset_materialization.asset_key.to_user_string() for entry in stats.materialization_events})
    )
    status = stats.status.value if stats.status else "UNKNOWN"
    return Timing(stats.step_key, status, _moment(stats.start_time), _moment(stats.end_time), assets)


def _start_order(timing: Timing) -> tuple[bool, datetime, str]:
    never_started = timing.start is None
    return never_started, timing.start or datetime.max.replace(tzinfo=timezone.utc), timing.name


def run_timings(instance: dg.DagsterInstance, run_id: str) -> RunTimings:
    """Per-step and whole-run wall times of one run, from its event log."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in the Dagster instance")
    run_stats = instance.get_run_stats(run_id)
    total = Timing("run total", run.status.value, _moment(run_stats.start_time), _moment(run_stats.end_time))
    steps = sorted((_step_timing(stats) for stats in instance.get_run_step_stats(run_id)), key=_start_order)
    return RunTimings(run_id=run_id, job_name=run.job_name, total=total, steps=steps)


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%H:%M:%S")


def _row(timing: Timing, run_seconds: float | None) -> str:
    seconds = "-" if timing.seconds is None else f"{timing.seconds:9.1f}"
    share = "-" if timing.seconds is None or not run_seconds else f"{100 * timing.seconds / run_seconds:5.1f}%"
    assets = ", ".join(timing.assets) if timing.assets and timing.assets != (timing.name,) else ""
    return (
        f"{timing.name:<28} {timing.status:<11} {_clock(timing.start):>8} {_clock(timing.end):>8} "
        f"{seconds:>9} {share:>6}  {assets}"
    ).rstrip()


def format_timings(timings: RunTimings) -> str:
    """A plain-text table: one row per step in start order, then the run total."""
    run_seconds = timings.total.seconds
    header = (
        f"{'step':<28} {'status':<11} {'start':>8} {'end':>8} {'seconds':>9} {'share':>6}  assets (if not the step)"
    )
    lines = [f"Wall time per step of run {timings.run_id} ({timings.job_name}):", header]
    lines += [_row(step, run_seconds) for step in timings.steps]
    lines.append(_row(timings.total, run_seconds))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lpt_dagster.timings", description=__doc__)
    parser.add_argument("--run-id", help="the run to show (default: the job's latest run)")
    parser.add_argument("--job", default=PIPELINE_JOB_NAME, help="job whose latest run to show")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        run_id = args.run_id or latest_run_id(instance, args.job)
        if run_id is None:
            print(f"no run of {args.job} in the Dagster instance at $DAGSTER_HOME", file=sys.stderr)
            return 1
        print(format_timings(run_timings(instance, run_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
