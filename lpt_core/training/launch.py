"""Training a variant in several processes from a process that is not launched itself (the Dagster
training asset): the recipe's training.launch names the launcher (torchrun or accelerate launch)
and the number of processes; the launcher runs as a subprocess, each of its processes running
`lpt train` (lpt_core.cli) on the same outputs folder, and the checkpoint they leave is then read
back through `train_variant` as a finished run, exactly as a run trained in this process.

Progress travels as lines: the launched main process reports every callback as one marked JSON
line on its stdout (ProgressLines), which the launching process decodes and hands to its own
callbacks (MLflow, the Dagster log); every other line of any process (each process's own progress
log, tagged with its rank by `lpt train`) is handed on as a log message, as it comes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lpt_core.config import LaunchConfig, Recipe
from lpt_core.paths import Outputs, resolve_repo_path
from lpt_core.training.alternation import TrainingCallbacks, TrainingData, TrainingResult, train_variant
from lpt_core.training.checkpoints import latest_phase
from lpt_core.training.variants import get_variant

# Starts every line that carries a callback of the launched main process.
PROGRESS_MARK = "LPT-PROGRESS "
# The launched run's last lines quoted in the error when it fails.
TAIL_LINES = 30
# The module each launcher runs as (`python -m`), so it is the launching interpreter's own install.
LAUNCHER_MODULES = {"torchrun": "torch.distributed.run", "accelerate": "accelerate.commands.launch"}


class LaunchError(ValueError):
    """A launch this machine cannot run; the message names the setting to change."""


class LaunchedRunFailed(RuntimeError):
    """The launched training exited with an error; the message quotes its last lines."""


class ProgressLines:
    """TrainingCallbacks of a launched main process: each callback one marked JSON line on stdout.

    Only the main process writes these, to stdout, where the other processes write nothing of their
    own (they log to stderr): the lines arrive whole, not interleaved with another process's."""

    def metrics(self, phase: str, round_index: int, step: int, values: dict) -> None:
        self._emit("metrics", phase, round_index, step, values)

    def artifact_text(self, name: str, text: str) -> None:
        self._emit("artifact_text", name, text)

    def log(self, message: str) -> None:
        self._emit("log", message)

    def result(self, summary: dict) -> None:
        """The run's outcome (checkpoint, resumed_from, ...), the last line a launched run writes."""
        self._emit("result", summary)

    @staticmethod
    def _emit(event: str, *args: Any) -> None:
        # Positional: implementations of TrainingCallbacks name their parameters as they like.
        line = PROGRESS_MARK + json.dumps({"event": event, "args": args}, default=_plain)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def train_variant_launched(
    recipe: Recipe, name: str, data: TrainingData, outputs: Outputs, callbacks: TrainingCallbacks
) -> TrainingResult:
    """Train (or resume) variant `name` as recipe.training.launch says: in this process with one
    process, else launched in several and then read back from its checkpoint."""
    launch = recipe.training.launch
    if launch.processes == 1:
        return train_variant(recipe, name, data, outputs, callbacks)
    variant = get_variant(name)
    variant_recipe = variant.recipe_for(recipe)
    check_launch(variant_recipe)
    with tempfile.TemporaryDirectory(prefix="lpt-launch-") as folder:
        recipe_file = Path(folder) / f"{recipe.name}.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        command = launch_command(launch, recipe_file, name, outputs.root)
        callbacks.log(f"launching {launch.processes} processes: {shlex.join(command)}")
        summary = run_launched(command, callbacks)
    # Reading back must not train: a checkpoint this process does not see as the launched run's last
    # (another training hash, say) would make train_variant train here, in one process, for hours.
    latest = latest_phase(outputs.training(name), variant_recipe.training_hash(), variant.schedule)
    if latest is None or str(latest.path) != summary["checkpoint"]:
        raise LaunchedRunFailed(f"the launched training reported {summary['checkpoint']}, but the last checkpoint "
                                f"found for {name} is {latest and latest.path}")
    # This returns the finished run's checkpoint (and says it resumes from it, to this module's
    # logger only: the launched run said what it did).
    result = train_variant(recipe, name, data, outputs)
    callbacks.log(f"{launch.processes} processes trained {name}: read back {result.checkpoint}")
    return dataclasses.replace(result, resumed_from=summary.get("resumed_from"))


def check_launch(recipe: Recipe) -> None:
    """LaunchError, naming the setting, when this machine cannot run the (variant's) recipe's
    training.launch: its launcher (or DeepSpeed, for an accelerate config that uses it) is not
    installed, it asks for more processes than there are GPUs (or CPU cores, where training runs on
    the CPU), or the training uses what the launch's strategy cannot run. One process launches
    nothing: nothing to check."""
    launch, device = recipe.training.launch, recipe.models.device
    if launch.processes == 1:
        return
    module = LAUNCHER_MODULES[launch.launcher]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise LaunchError(
            f"training.launch.launcher {launch.launcher!r}: {module} is not installed for {sys.executable}; "
            "install it, or set training.launch.launcher to torchrun (it comes with torch)"
        )
    if launch.launcher == "accelerate":
        _check_accelerate_config(launch.accelerate_config, recipe)
    available, what = _available_devices(device)
    if launch.processes > available:
        raise LaunchError(
            f"training.launch.processes is {launch.processes}, but this machine has {available} {what} "
            f"(models.device {device!r}): at most one process per {what.rstrip('s')}"
        )


def launch_command(launch: LaunchConfig, recipe_file: Path, variant: str, outputs_root: Path) -> list[str]:
    """The launcher's command line: `launch.processes` processes on this machine, each running
    `lpt train` for `variant` of the recipe in `recipe_file` on the outputs under `outputs_root`."""
    launcher = [sys.executable, "-m", LAUNCHER_MODULES[launch.launcher]]
    if launch.launcher == "torchrun":
        # --standalone: a rendezvous on a free local port, so runs side by side do not collide.
        launcher += ["--standalone", "--nproc_per_node", str(launch.processes)]
    else:
        config = resolve_repo_path(launch.accelerate_config)
        launcher += ["--config_file", str(config), "--num_processes", str(launch.processes)]
    train = ["--recipe", str(recipe_file), "--variant", variant, "--outputs", str(outputs_root), "--progress", "json"]
    return [*launcher, "-m", "lpt_core.cli", "train", *train]


def run_launched(command: list[str], callbacks: TrainingCallbacks) -> dict:
    """Run `command`, handing each line of its output to `callbacks` as it comes (marked lines as
    the callbacks they stand for, the others as log messages); the launched run's result summary.
    LaunchedRunFailed, quoting the last lines, when it fails; the run is stopped if this one is."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    summary: dict | None = None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in _lines(process):
            tail.append(line)
            summary = _forward(line, callbacks) or summary
        code = process.wait()
    finally:
        _stop(process)
    if code or summary is None:
        quoted = "\n".join(tail)
        raise LaunchedRunFailed(f"the launched training exited with code {code}; its last lines:\n{quoted}")
    return summary


def _forward(line: str, callbacks: TrainingCallbacks) -> dict | None:
    """Hand one output line to `callbacks`; the summary if it is the result line."""
    _, marked, payload = line.partition(PROGRESS_MARK)
    if not marked:
        callbacks.log(line)
        return None
    event = json.loads(payload)
    if event["event"] == "result":
        return event["args"][0]
    getattr(callbacks, event["event"])(*event["args"])
    return None


def _lines(process: subprocess.Popen) -> Iterator[str]:
    """Lines of the process's stdout and stderr as each arrives (one reader thread per pipe, so a
    full pipe never stalls the other), until both close."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream) -> None:
        for line in stream:
            if line.strip():  # the launchers' and libraries' blank separator lines say nothing
                lines.put(line.rstrip("\n"))
        lines.put(None)

    for stream in (process.stdout, process.stderr):
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    open_streams = 2
    while open_streams:
        line = lines.get()
        if line is None:
            open_streams -= 1
        else:
            yield line


def _stop(process: subprocess.Popen) -> None:
    # The launcher passes SIGTERM on to its processes; a run that ignores it is killed.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check_accelerate_config(config_path: str, recipe: Recipe) -> None:
    config = resolve_repo_path(config_path)
    if not config.is_file():
        raise LaunchError(f"training.launch.accelerate_config: no file {config}")
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    if settings.get("distributed_type") != "DEEPSPEED":
        return
    backtracks = getattr(recipe.training.rl.algorithm, "max_backtracks", 0)
    if backtracks:
        # Found on CPU (docs/distributed_training.md, "DeepSpeed ZeRO-2"): the snapshot is a deep copy
        # of the optimizer's state, which fails on DeepSpeed's ZeRO optimizer.
        raise LaunchError(
            f"training.rl.algorithm.max_backtracks {backtracks}: REBEL's backtracking snapshots the optimizer "
            f"state, which DeepSpeed's ZeRO optimizer ({config_path}) cannot copy; set it to 0, or use "
            "configs/accelerate/ddp.yaml"
        )
    if importlib.util.find_spec("deepspeed") is None:
        raise LaunchError(
            f"training.launch.accelerate_config {config_path} uses DeepSpeed, which is not installed for "
            f"{sys.executable}: pip install deepspeed, or use configs/accelerate/ddp.yaml"
        )


def _available_devices(device: str) -> tuple[int, str]:
    """How many processes this machine can give a device each: (GPUs, "GPUs") where training runs on
    CUDA, else (CPU cores, "CPU cores")."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count(), "GPUs"
    return len(os.sched_getaffinity(0)), "CPU cores"


def _plain(value: Any) -> Any:
    # Metrics may be numpy or torch scalars.
    return value.item() if hasattr(value, "item") else str(value)
