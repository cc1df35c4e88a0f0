"""Best-of-n fine-tuning (lpt_core.training.best_of_n) on the yardstick of bench/studies/rl_sweep.py: does
imitating the best of n sampled profiles make the greedy profiles of users it never saw rank
their next and held-out items better?

Same setting as the REBEL sweep (RL only: the frozen base all-MiniLM-L6-v2 recommender, a fresh
LoRA on SmolLM2, the recipe's split, each train user's first window as the prompt), but with a
probe large enough to resolve a few thousandths: --probe users, and every setting's training
users are the OTHER train users, a new --examples of them per iteration. After each iteration the
probe's greedy profiles are scored, and the change from the untrained policy is given with a
paired user-bootstrap 95% interval (the same users before and after).

    python bench/studies/best_of_n_sweep.py [--recipe full] [--settings 4:1.0:log_rank:4] [--iterations 2]
        [--examples 160] [--probe 256] [--batch-size 32] [--windows first|any]

Settings are samples:temperature:reward:targets[:from] (training.best_of_n.samples and
temperature, the selecting reward's kind, rl.reward_targets and rl.reward_targets_from, e.g.
4:1.0:log_rank:12:next_interactions). --windows any trains on one window per user drawn from all of
theirs (the report reads every window) rather than the first. Writes
bench/results/best_of_n_sweep_<dtype>.md and the per-iteration metrics in the .json beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from rl_sweep import (
    PROBE_KEYS,
    RESULTS,
    SweepSetup,
    _cpu_flags,
    change_cell,
    command_line,
    paired_change,
    yardstick_arguments,
)

from lpt_core.config import BestOfNConfig, RewardTargetsFrom
from lpt_core.training.best_of_n import best_of_n
from lpt_core.training.reward import RankReward


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    bench = SweepSetup.build(args.recipe, args.dtype, args.probe, args.held_out_from)
    users = len(bench.first_windows)
    print(f"{users} train users, {len(bench.yardstick.probe)} probe users, {len(bench.index)} items, "
          f"dtype {bench.dtype}, {args.threads} threads", flush=True)
    rl = bench.recipe.training.rl
    policy, tokenizer = bench.fresh_policy(rl)
    started = time.perf_counter()
    start = bench.yardstick.per_user(policy, tokenizer, rl.sampling.max_new_tokens)
    probe_seconds = time.perf_counter() - started
    print(f"untrained: {_means(start)} ({probe_seconds:.0f} s)", flush=True)

    rows, runs = [], {}
    for setting in args.settings.split(","):
        samples, temperature, kind, targets, targets_from = _setting(setting)
        sampling = {"temperature": temperature, "max_new_tokens": rl.sampling.max_new_tokens}
        cfg = BestOfNConfig(iterations=1, samples=samples, sampling=sampling,
                            learning_rate=args.learning_rate, epochs=args.epochs, batch_size=args.batch_size)
        pool = (bench.training_examples(targets, targets_from) if args.windows == "first"
                else bench.any_window_examples(targets, targets_from, seed=0))
        if len(pool) < args.examples * args.iterations:
            raise SystemExit(f"{len(pool)} non-probe train users; --examples x --iterations needs more")
        reward = RankReward(bench.encoder, bench.index, kind=kind)
        policy, tokenizer = bench.fresh_policy(rl)
        history = []
        for iteration in range(args.iterations):
            chunk = pool[iteration * args.examples : (iteration + 1) * args.examples]
            began = time.perf_counter()
            metrics = best_of_n(policy, tokenizer, chunk, reward, cfg, seed=iteration, output_dir=RESULTS / "scratch")[0]
            if args.save_adapters:  # for bench/studies/adapter_on_run.py and adapter_yardstick.py
                policy.save_pretrained(str(args.save_adapters / setting.replace(":", "_") / f"iteration-{iteration + 1}"))
            metrics["seconds"] = time.perf_counter() - began
            after = bench.yardstick.per_user(policy, tokenizer, rl.sampling.max_new_tokens)
            metrics |= paired_change(start, after, args.seed)
            history.append(metrics)
            print(f"{setting} iteration {iteration + 1}: {json.dumps(metrics)}", flush=True)
            runs[setting] = history
            # Written after every iteration: a run stopped early keeps what it measured.
            _write(args, [*rows, {"setting": setting, "history": history}], runs, start, bench.dtype, users)
        rows.append({"setting": setting, "history": history})


def _setting(setting: str) -> tuple[int, float, str, int, str]:
    fields = setting.split(":")
    sources = get_args(RewardTargetsFrom)
    if len(fields) not in (4, 5) or (len(fields) == 5 and fields[4] not in sources):
        raise SystemExit(f"setting {setting!r}: expected samples:temperature:reward:targets[:{'|'.join(sources)}]")
    return int(fields[0]), float(fields[1]), fields[2], int(fields[3]), fields[4] if len(fields) == 5 else "later_windows"


def _means(scores: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{key} {values.mean():.4f}" for key, values in scores.items())


def _table(rows: list[dict]) -> str:
    lines = [
        "| setting (samples:temperature:reward:targets) | iteration | sample reward -> best of n | examples kept "
        "| SFT loss | probe next-item NDCG, change [95%] | probe held-out NDCG, change [95%] | s/iteration |",
        "|---|---:|---|---:|---:|---|---|---:|",
    ]
    for row in rows:
        for i, m in enumerate(row["history"], 1):
            cells = [change_cell(m, key) for key in PROBE_KEYS]
            lines.append(
                f"| {row['setting']} | {i} | {m['sample_reward']:.4f} -> {m['best_reward']:.4f} "
                f"| {m['examples_kept']:.0f} | {m.get('sft_loss', float('nan')):.3f} | {cells[0]} | {cells[1]} "
                f"| {m['seconds']:.0f} |"
            )
    return "\n".join(lines)


def _write(args: argparse.Namespace, rows: list[dict], runs: dict, start: dict, dtype: str, users: int) -> None:
    command = command_line("best_of_n_sweep.py", args)
    text = "\n".join([
        "# Best-of-n fine-tuning on the RL sweep's yardstick (frozen base recommender)", "",
        f"`{command}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, CPU flags: {_cpu_flags()}; "
        f"model dtype {dtype}. {users} train users; probe = greedy profiles of the first window of "
        f"{len(start[PROBE_KEYS[0]])} of them, never trained on; each iteration samples n profiles for "
        f"{args.examples} other users ({args.windows} window each) and fine-tunes the LoRA (lr {args.learning_rate}, {args.epochs} epoch) on the "
        f"best of each. Untrained probe: {_means(start)}. Changes are after - untrained on the same probe users, "
        "paired user-bootstrap 95% intervals.",
        "", _table(rows), "",
    ])
    name = f"best_of_n_sweep_{dtype}{args.suffix}"
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs}, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS / f'{name}.md'}")


def _arguments() -> argparse.Namespace:
    parser = yardstick_arguments(__doc__.splitlines()[0], probe=256)
    parser.add_argument("--settings", default="4:1.0:log_rank:4")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--examples", type=int, default=160, help="train users sampled per iteration")
    parser.add_argument("--windows", choices=("first", "any"), default="first",
                        help="each training user's first window, or one drawn uniformly from all of theirs")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="sampling batch in sequences (batch // samples prompts share a prefill)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's")
    parser.add_argument("--save-adapters", type=Path, default=None,
                        help="save the LoRA adapter after every iteration under DIR/<setting>/iteration-<i>")
    return parser.parse_args()


if __name__ == "__main__":
    main()
