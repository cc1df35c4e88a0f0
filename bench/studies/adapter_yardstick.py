"""A trained writer's adapter (a finished run's, or any saved LoRA) on the sweeps' yardstick.

The full recipe trains its writer against a reward ranked by the evaluation's item head and
reports NDCG@10 of test windows; the sweeps (bench/studies/rl_sweep.py, best_of_n_sweep.py) train
against plain cosine over the frozen base encoder and read a yardstick: greedy profiles of ~240
probe users, full-rank NDCG of their next item and of their held-out later targets. Reading a
run's adapter on the same yardstick says whether what it learned shows there: if it does, the
run's report missed it; if not, its training signal taught nothing the sweeps' does.

    python bench/studies/adapter_yardstick.py --recipe full \\
        --adapter /work/fullrun4/.lpt/outputs/training/best_of_n_hybrid/<checkpoint>/adapter

Prints the untrained and each adapter's yardstick, with the paired user-bootstrap 95% interval of
the change (the same probe users).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rl_sweep import PROBE_KEYS, SweepSetup, change_cell, paired_change, yardstick_arguments

from lpt_core.training.policy import load_adapter_weights


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    bench = SweepSetup.build(args.recipe, args.dtype, args.probe, args.held_out_from)
    rl = bench.recipe.training.rl
    policy, tokenizer = bench.fresh_policy(rl)  # a fresh LoRA writes as the base model does
    started = time.perf_counter()
    untrained = bench.yardstick.per_user(policy, tokenizer, rl.sampling.max_new_tokens)
    print(f"{len(bench.yardstick.probe)} probe users; untrained: "
          + ", ".join(f"{k} {untrained[k].mean():.4f}" for k in PROBE_KEYS)
          + f" ({time.perf_counter() - started:.0f} s)\n", flush=True)
    print("| adapter | " + " | ".join(f"{k}, change [95%]" for k in PROBE_KEYS) + " |")
    print("|---|" + "---|" * len(PROBE_KEYS))
    for adapter in args.adapter:
        load_adapter_weights(policy, adapter)
        after = paired_change(untrained, bench.yardstick.per_user(policy, tokenizer, rl.sampling.max_new_tokens))
        print(f"| {adapter} | " + " | ".join(change_cell(after, k) for k in PROBE_KEYS) + " |", flush=True)


def _arguments():
    parser = yardstick_arguments(__doc__.splitlines()[0], probe=256)
    parser.add_argument("--adapter", type=Path, nargs="+", required=True, help="saved LoRA adapter folder(s)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
