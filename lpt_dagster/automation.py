"""What runs, and when: the pipeline and retraining jobs, the weekly retraining schedule, and the
sensor that starts the pipeline when new raw data lands in a watched folder.

Both the schedule and the sensor start STOPPED: a run trains models on the GPU, so starting one
unasked is a choice a person makes once, in the UI (Automation tab); the daemon remembers it.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lpt_core.paths import resolve_repo_path

PIPELINE_JOB_NAME = "langptune_pipeline"
RETRAIN_JOB_NAME = "langptune_retrain"
WATCH_DIR_ENV = "LPT_WATCH_DIR"
DEFAULT_WATCH_DIR = "data/raw/incoming"
NEW_FILE_TAG = "lpt/new_file"
# Mondays 03:00 UTC: a quiet hour, and a week of new interactions between two trainings.
WEEKLY_RETRAIN_CRON = "0 3 * * 1"
SENSOR_INTERVAL_SECONDS = 30
# Names that downloaders and copy tools give a file while they are still writing it.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")

EXECUTOR_ENV = "LPT_DAGSTER_EXECUTOR"
# Executors from the `scale` extra, imported only when chosen: name -> (module, attribute).
OPTIONAL_EXECUTORS = {"k8s": ("dagster_k8s", "k8s_job_executor")}


def run_executor() -> dg.ExecutorDefinition:
    """The executor of both jobs, chosen by $LPT_DAGSTER_EXECUTOR (docs/scaling.md).

    `in_process` (default): one process for the whole run. Every step imports torch/transformers,
    and on a small machine re-importing them in a subprocess per step costs more than the
    parallelism gains. `multiprocess`: one process per step, independent steps side by side, for a
    machine with cores and memory to spare. `k8s`: one Kubernetes pod per step. Whatever the
    choice, the instance's pool limit (dagster.yaml) caps how many "gpu" steps run at once.
    """
    choice = os.environ.get(EXECUTOR_ENV, "in_process")
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "multiprocess":
        return dg.multiprocess_executor
    if choice not in OPTIONAL_EXECUTORS:
        expected = ", ".join(["in_process", "multiprocess", *OPTIONAL_EXECUTORS])
        raise ValueError(f"${EXECUTOR_ENV}={choice!r}: expected one of {expected}")
    module_name, attribute = OPTIONAL_EXECUTORS[choice]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"${EXECUTOR_ENV}={choice} needs {module_name}: pip install -e '.[scale]'"
        ) from error
    return getattr(module, attribute)


pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=dg.AssetSelection.all(),
    executor_def=run_executor(),
    description="Raw data to evaluation report for the chosen recipe.",
)

# Everything downstream of training, whatever group it is in (evaluation_report, and the registry's
# registered_model once it is in the graph); data, splits, zero-shot profiles and baselines are read
# from their last materialisation, so the pipeline must have run once before.
retrain_job = dg.define_asset_job(
    RETRAIN_JOB_NAME,
    selection=dg.AssetSelection.groups("training").downstream(),
    executor_def=run_executor(),
    description="Retrain the profile writer and the recommender on the current split, then re-evaluate "
    "(and re-register) them. Needs one full langptune_pipeline run before.",
)

weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain",
    job=retrain_job,
    cron_schedule=WEEKLY_RETRAIN_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrain and re-evaluate every Monday at 03:00 UTC (turn on in the UI).",
)


def watch_dir() -> Path:
    """The folder the new-raw-data sensor watches: $LPT_WATCH_DIR, else data/raw/incoming.
    A relative path is taken from the repository root."""
    return resolve_repo_path(os.environ.get(WATCH_DIR_ENV) or DEFAULT_WATCH_DIR).resolve()


FileSignature = tuple[int, int]  # (size in bytes, modification time in ns)


def is_partial_name(name: str) -> bool:
    """Hidden names (rsync's `.name.XXXXXX`) and download suffixes mark a file still being written."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def scan_folder(folder: Path) -> dict[str, FileSignature]:
    """The signature of every complete-looking regular file directly in `folder`."""
    signatures = {}
    for path in folder.iterdir():
        if is_partial_name(path.name):
            continue
        try:
            info = path.stat()
        except FileNotFoundError:  # moved away since the listing; the next tick will not see it
            continue
        if stat.S_ISREG(info.st_mode):
            signatures[path.name] = (info.st_size, info.st_mtime_ns)
    return signatures


@dataclass
class WatchState:
    """The sensor cursor: files already run on, and files seen once that must look the same on the
    next tick before they count as fully written."""

    processed: dict[str, FileSignature] = field(default_factory=dict)
    pending: dict[str, FileSignature] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> WatchState:
        """An empty cursor (first tick, or reset in the UI) starts with nothing processed."""
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            return cls(
                processed={name: (int(size), int(mtime)) for name, (size, mtime) in data["processed"].items()},
                pending={name: (int(size), int(mtime)) for name, (size, mtime) in data["pending"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"sensor cursor is not the JSON this sensor writes ({error}); "
                f"clear it to start from an empty state: {cursor!r}"
            ) from error

    def to_cursor(self) -> str:
        return json.dumps({"processed": self.processed, "pending": self.pending}, sort_keys=True)

    def advance(self, current: dict[str, FileSignature]) -> tuple[list[str], WatchState]:
        """Files ready to run on now (same signature as on the previous tick and not already run on
        in that version), and the state for the next tick. A removed file is forgotten."""
        processed = {name: sig for name, sig in self.processed.items() if name in current}
        pending = {}
        ready = []
        for name, signature in sorted(current.items()):
            if processed.get(name) == signature:
                continue
            if self.pending.get(name) == signature:
                ready.append(name)
                processed[name] = signature
            else:
                pending[name] = signature
        return ready, WatchState(processed=processed, pending=pending)


@dg.sensor(
    name="new_raw_data",
    job=pipeline_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        f"Starts {PIPELINE_JOB_NAME} once per new or replaced file in ${WATCH_DIR_ENV} (default "
        f"{DEFAULT_WATCH_DIR}), tagged {NEW_FILE_TAG}=<path>. A file runs once its size and mtime are "
        f"the same on two ticks in a row; hidden files and {', '.join(PARTIAL_SUFFIXES)} are never read."
    ),
)
def new_raw_data_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One pipeline run per file that has landed, fully written, since the last run on it."""
    folder = watch_dir()
    if not folder.is_dir():
        return dg.SensorResult(
            skip_reason=f"watched folder {folder} does not exist (set ${WATCH_DIR_ENV} or create it)",
            cursor=context.cursor,
        )
    ready, state = WatchState.from_cursor(context.cursor).advance(scan_folder(folder))
    if not ready:
        waiting = f"; waiting for {', '.join(sorted(state.pending))} to stop changing" if state.pending else ""
        return dg.SensorResult(skip_reason=f"no new complete file in {folder}{waiting}", cursor=state.to_cursor())
    run_requests = [
        dg.RunRequest(
            # The run key also stops a re-run if the cursor is ever lost while a run is queued.
            run_key=f"{name}:{state.processed[name][0]}:{state.processed[name][1]}",
            tags={NEW_FILE_TAG: str(folder / name)},
        )
        for name in ready
    ]
    context.log.info("new raw data in %s: %s", folder, ", ".join(ready))
    return dg.SensorResult(run_requests=run_requests, cursor=state.to_cursor())

