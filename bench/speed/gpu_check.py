"""`make gpu-check`: the project's GPU-side paths at the paper's shape in a few minutes on one GPU,
summed up in one table (bench/results/gpu_check_<card>.md).

Stages, each printed with its time as it goes (bench/speed/paper_scale.py's machinery, random weights
at the gemma-2b shape: the speeds measured do not depend on the values):

1. prerequisites: the packages below importable, CUDA present, enough free GPU memory;
2. model: the random-weight policy with the paper's LoRA (r=1024 on all linear layers);
3. one REBEL update by lpt_core's RebelTrainer, and
4. the same update by the reference-style loop (goal: 3. is 10x faster);
5. TRL GRPO: one step of TRL's GRPOTrainer through lpt_core's runner (lpt_core.training.rl), at
   the same shape, on the same policy, with a reward that needs no recommender;
6. bulk generation at batch 128 against the weight-streaming floor, goal: 7 ms per decode step.
   It merges the LoRA into the weights, so it comes last.

The GPU machine this is planned for has torch, transformers, peft and accelerate but no package
index: the packages it lacks (TRL, datasets and pydantic, with their own few dependencies) travel
as wheels, about 4.5 MB, that `make gpu-check-wheels` downloads into .whl/ on a machine with one;
`make gpu-check` installs them beside the repository and runs this script. Nothing it imports
may need polars, faiss, dagster, mlflow or vllm (tests/test_gpu_check.py runs it with them blocked).

`--dry-run` runs every stage on the CPU at a tiny shape in seconds (tests/test_gpu_check.py).
Exit status: 0 when every stage measured its figure, 1 when one was skipped or failed (the output
says why), 2 when a prerequisite is missing (nothing ran).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# Import name -> distribution name, of everything the stages import beyond the standard library.
REQUIRED_PACKAGES = {
    "torch": "torch", "transformers": "transformers", "peft": "peft", "accelerate": "accelerate",
    "trl": "trl", "datasets": "datasets", "pydantic": "pydantic", "yaml": "pyyaml", "numpy": "numpy",
    "pyarrow": "pyarrow", "pandas": "pandas", "dill": "dill", "multiprocess": "multiprocess",
}
# The packages that travel as wheels, installed without their dependencies (`make gpu-check`):
# whether the machine's own versions of those satisfy them is checked, and reported.
CARRIED = ("trl", "datasets", "pydantic")
# The gemma-2b shape's model, LoRA r=1024, optimizer state and activations, with room to spare
# (a section that runs out of memory is reported and skipped; this only refuses a card that is
# far too small or already in use).
MIN_FREE_GPU_GIB = 40.0
BUDGET_S = 540.0  # sections that would start later are skipped: `make gpu-check` stays under 10 minutes
# Seconds the GRPO step is expected to need at the paper's shape (generous): TRL samples with
# transformers' generate on the dynamic cache, like the reference-style loop.
TRL_NEEDS_S = 150.0
DECODE_STEP_GOAL_MS = 7.0  # per decode step at batch 128, gemma-2b shape, on an H100


@dataclass
class Figures:
    """What the stages measured; None where a stage was skipped or failed (its log says why)."""

    speedup_goal: float
    dry_run: bool = False  # a tiny shape on the CPU: the figures show the stages ran, not whether goals are met
    reference_s: float | None = None
    ours_s: float | None = None
    grpo: dict[str, float] | None = None
    bulk: Any = None  # paper_scale.BulkFigures
    peak_gib: float | None = None
    header: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.perf_counter()
    print("== prerequisites", flush=True)
    problems = check_prerequisites(dry_run=args.dry_run)
    if problems:
        for problem in problems:
            print(f"prerequisites: {problem}", flush=True)
        return 2
    print(f"-- prerequisites: done in {time.perf_counter() - started:.1f} s", flush=True)
    return _run_stages(args)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU at a tiny shape, in seconds")
    parser.add_argument("--out", type=Path, help="the table (default: bench/results/gpu_check_<card>.md)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help="skip sections that would start after this many seconds (not in a dry run)")
    return parser.parse_args(argv)


def check_prerequisites(dry_run: bool) -> list[str]:
    """What stops the check from running, as lines to print; prints what it finds."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    found = [f"{dist} {importlib.metadata.version(dist)}" for name, dist in REQUIRED_PACKAGES.items() if name not in missing]
    print(f"prerequisites: packages {', '.join(found)}", flush=True)
    lpt_core = importlib.util.find_spec("lpt_core")
    if lpt_core is None:
        return ["lpt_core is not importable: run from the repository root with PYTHONPATH=. (`make gpu-check` does)"]
    print(f"prerequisites: lpt_core from {Path(lpt_core.origin).parent}", flush=True)
    if missing:
        return [f"missing packages {', '.join(missing)}: on a machine with a package index run `make gpu-check-wheels` "
                "and bring .whl/ along; `make gpu-check` installs them"]
    for line in _unmet_requirements(CARRIED):
        print(f"prerequisites: WARNING {line}", flush=True)
    import torch  # only now: importing it is what a missing package would have broken

    if dry_run:
        print("prerequisites: dry run, on the CPU", flush=True)
        return []
    if not torch.cuda.is_available():
        return [f"CUDA is not available to torch {torch.__version__} (use --dry-run on a CPU)"]
    free, total = torch.cuda.mem_get_info()
    print(f"prerequisites: {torch.cuda.get_device_name()}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free", flush=True)
    if free / 2**30 < MIN_FREE_GPU_GIB:
        return [f"{free / 2**30:.1f} GiB of GPU memory free, the gemma-2b shape needs about {MIN_FREE_GPU_GIB:.0f}"]
    return []


def _unmet_requirements(distributions: tuple[str, ...]) -> list[str]:
    """`distributions`' own requirements (extras aside) that the installed packages do not meet."""
    from packaging.requirements import Requirement

    unmet = []
    for distribution in distributions:
        for line in importlib.metadata.requires(distribution) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                installed = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                unmet.append(f"{distribution} needs {requirement}, not installed")
                continue
            if not requirement.specifier.contains(installed, prereleases=True):
                unmet.append(f"{distribution} needs {requirement}, {requirement.name} {installed} is installed")
    return unmet


def _run_stages(args: argparse.Namespace) -> int:
    # Imported once the prerequisites hold: they import torch, transformers, peft and lpt_core.
    import torch
    import transformers
    from paper_scale import (
        BULK_NEEDS_S,
        PAPER_SHAPE,
        REFERENCE_NEEDS_S,
        SPEEDUP_GOAL,
        Budget,
        Report,
        bench_bulk,
        bench_ours,
        bench_reference,
        build_workload,
        copy_bandwidth,
        describe_machine,
        guarded,
        parse_arguments,
    )

    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:
        # The tiny shape's matrices are too small to share among threads; on a loaded machine the
        # threads' waits for each other made a 64-wide linear layer take 16 ms.
        torch.set_num_threads(1)
    shape = _tiny_shape() if args.dry_run else PAPER_SHAPE
    card = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name(device)
    out = args.out or RESULTS / f"gpu_check_{_slug(card)}.md"
    bench_args = parse_arguments([
        "--device", device.type, "--passes", "1" if args.dry_run else "4",
        "--ours-updates", "1" if args.dry_run else "2", "--reference-updates", "1",
    ])
    report = Report(None)
    budget = Budget(None if args.dry_run else args.budget_s)
    figures = Figures(speedup_goal=SPEEDUP_GOAL, dry_run=args.dry_run)
    describe_machine(report, device, shape, bench_args)

    def stage(name: str, needs_s: float, run: Any) -> Any:
        started = time.perf_counter()
        result = guarded(report, budget, name, needs_s, run)
        report.line(f"-- {name}: {'done' if result is not None else 'no figure'} in {time.perf_counter() - started:.1f} s")
        return result

    bandwidth = copy_bandwidth(device, size_bytes=2**26 if args.dry_run else 2**30)
    report.line(f"device-to-device copy bandwidth (bytes read + written): {bandwidth / 1e9:.0f} GB/s")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    workload = stage("model", 0.0, lambda: build_workload(report, shape, bench_args, device, dtype))
    figures.header = [
        f"command: {' '.join(['python', *sys.argv])}",
        f"card: {card}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {importlib.metadata.version('trl')}",
        f"shape {shape.name}: random weights, {shape.users} users x 2 samples x {shape.new_tokens} tokens from "
        f"{shape.prompt_tokens}-token prompts, LoRA r={shape.lora_r} on all linear layers; bulk batch {shape.bulk_batch}",
    ]
    if workload is None:
        return _finish(figures, out, budget, device)
    policy, tokenizer, examples, cfg = workload.policy, workload.tokenizer, workload.examples, workload.cfg
    figures.ours_s = stage(
        "REBEL update, ours", 0.0,
        lambda: bench_ours(report, policy, tokenizer, examples, cfg, bench_args, budget,
                           REFERENCE_NEEDS_S + TRL_NEEDS_S + BULK_NEEDS_S),
    )
    _write_table(figures, out)
    figures.reference_s = stage(
        "REBEL update, reference-style loop", REFERENCE_NEEDS_S,
        lambda: bench_reference(report, policy, tokenizer, examples, cfg, bench_args, budget,
                                TRL_NEEDS_S + BULK_NEEDS_S),
    )
    _write_table(figures, out)
    figures.grpo = stage("TRL GRPO step", TRL_NEEDS_S, lambda: bench_trl_grpo(report, workload))
    _write_table(figures, out)
    figures.bulk = stage("bulk generation", BULK_NEEDS_S,
                         lambda: bench_bulk(report, policy, tokenizer, shape, bandwidth, device, dtype))
    return _finish(figures, out, budget, device)


def _tiny_shape() -> Any:
    """The dry run's shape (built here, not at import: paper_scale imports torch and transformers)."""
    from paper_scale import Shape
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return Shape("tiny llama (dry run)", config, users=2, prompt_tokens=16, new_tokens=4, lora_r=4, lora_alpha=8,
                 bulk_batch=4)


def bench_trl_grpo(report: Any, workload: Any) -> dict[str, float]:
    """One GRPO step of TRL's GRPOTrainer on the workload's policy and prompts, through the runner
    the pipeline uses (lpt_core.training.rl.run_rl_phase: `training.rl.algorithm: grpo`), with the
    same rollout (prompts x 2 samples x new tokens), micro-batch, KL and LoRA as REBEL's update."""
    from paper_scale import HashReward

    from lpt_core.config import RLConfig
    from lpt_core.training.rl import run_rl_phase

    settings = workload.cfg.model_dump()
    cfg = RLConfig.model_validate({**settings, "algorithm": "grpo", "updates_per_round": 1})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-trl-") as scratch:
        (metrics,) = run_rl_phase(workload.policy, workload.tokenizer, workload.examples, HashReward(), cfg,
                                  seed=0, output_dir=Path(scratch))
    wall = time.perf_counter() - started
    report.line(f"TRL GRPO: one step {metrics['seconds']:.1f} s (the first: includes loading kernels), "
                f"{wall:.1f} s with the trainer's construction; {metrics['profile_tokens']:.0f} tokens per "
                f"completion on average (TRL counts the stop token)")
    return {"step_s": metrics["seconds"], "wall_s": wall, "tokens": metrics["profile_tokens"]}


def _finish(figures: Figures, out: Path, budget: Any, device: Any) -> int:
    """Writes the final table; the exit status: 0 when every stage measured its figure, else 1."""
    import torch

    if device.type == "cuda":
        figures.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    figures.header.append(f"total wall time {budget.elapsed():.0f} s"
                          + (f", peak GPU memory allocated {figures.peak_gib:.1f} GiB" if figures.peak_gib else ""))
    _write_table(figures, out)
    print(f"table written to {out}", flush=True)
    print(out.read_text(encoding="utf-8"), flush=True)
    measured = (figures.reference_s, figures.ours_s, figures.grpo, figures.bulk)
    return 0 if all(figure is not None for figure in measured) else 1


def _write_table(figures: Figures, out: Path) -> None:
    """The table as it stands (rewritten after each stage: a run cut short keeps what it measured)."""
    rows = [("check", "measured", "goal", "met"), ("---", "---", "---", "---")]
    rows.append(("REBEL update, reference-style loop", _seconds(figures.reference_s), "", ""))
    speedup = figures.reference_s / figures.ours_s if figures.reference_s and figures.ours_s else None
    rows.append((
        "REBEL update, ours (lpt_core's RebelTrainer)",
        _seconds(figures.ours_s) + (f", {speedup:.1f}x faster" if speedup else ""),
        f"{figures.speedup_goal:.0f}x faster than the reference-style loop",
        _met(figures, speedup, figures.speedup_goal, higher_is_better=True),
    ))
    grpo = figures.grpo
    rows.append((
        "TRL GRPO, one step (GRPOTrainer through lpt_core.training.rl)",
        f"{grpo['step_s']:.1f} s ({grpo['wall_s']:.1f} s with the trainer's construction)" if grpo else "not measured",
        "runs", "yes" if grpo else "no",
    ))
    bulk = figures.bulk
    rows.append((
        "bulk generation, decode step (prefill included)",
        f"{bulk.step_ms:.2f} ms ({bulk.tokens_per_s:.0f} tokens/s)" if bulk else "not measured",
        f"{DECODE_STEP_GOAL_MS:.0f} ms",
        _met(figures, bulk.step_ms if bulk else None, DECODE_STEP_GOAL_MS, higher_is_better=False),
    ))
    rows.append(("bulk generation, weight-streaming floor", f"{bulk.floor_ms:.2f} ms" if bulk else "not measured", "", ""))
    lines = ["# GPU check (bench/speed/gpu_check.py)", "", *(f"- {line}" for line in figures.header), ""]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _seconds(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f} s"


def _met(figures: Figures, value: float | None, goal: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    if figures.dry_run:
        return "dry run"
    return "yes" if (value >= goal if higher_is_better else value <= goal) else "no"


def _slug(card: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'CPU (dry run)' -> 'cpu_dry_run'."""
    words = card.replace("NVIDIA", "").replace("(", "").replace(")", "").split()
    return "_".join(words).lower() if card.startswith("CPU") else words[0].lower()


if __name__ == "__main__":
    sys.exit(main())
