"""A saved writer adapter (a sweep's, or another run's) on a finished run's evaluated split: its
greedy profiles of the run's test windows against the run's stored zero-shot profiles, under the
recommenders that do not depend on the writer (profile_head's fit and plain cosine).

The sweeps' yardstick reads only each probe user's FIRST window; the report reads every window of
the test users. This says whether what a sweep's writer learned carries to the report's examples.

    python bench/studies/adapter_on_run.py --work /work/fullrun5/.lpt --recipe full \\
        --adapter /work/adapters/replicate/4_1.0_log_rank_4/iteration-2

Prints one comparison table per adapter (bench/studies/head_swap.py's: NDCG@10 and full-rank NDCG,
trained minus zero-shot with paired user-bootstrap 95% intervals). Generation runs on the CPU in
the recipe's decoding (greedy); about 17 minutes per adapter for 784 windows on 2 cores (float32).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from finished_run import FinishedRun, run_arguments
from head_swap import comparison_table, fixed_recommenders

from lpt_core import text
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_generator
from lpt_core.training.policy import load_adapter_weights, make_policy, merged_copy, policy_models


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    run = FinishedRun.load(args.work, args.recipe)
    recipe = run.recipe
    evaluated = run.evaluated()
    model, tokenizer = load_generator(recipe.models.generator, policy_models(recipe))
    policy = make_policy(model, recipe.training.rl)
    prompts = text.build_prompts(evaluated, run.catalog, tokenizer, recipe.prompt, recipe.data.source)
    recommenders = fixed_recommenders(run)
    for adapter in args.adapter:
        load_adapter_weights(policy, adapter)
        started = time.perf_counter()
        with torch.random.fork_rng(), merged_copy(policy) as merged:
            generated = TransformersGenerator(merged, tokenizer, recipe.generation, model_id="adapter").generate(prompts)
        print(f"\n{adapter}: {len(prompts)} greedy profiles of {args.work}'s {recipe.evaluation.split} windows "
              f"({evaluated['user_id'].n_unique()} users) in {time.perf_counter() - started:.0f} s\n", flush=True)
        print(comparison_table(run, recommenders, [profile.text for profile in generated]), flush=True)


def _arguments() -> argparse.Namespace:
    parser = run_arguments(__doc__)
    parser.add_argument("--adapter", type=Path, nargs="+", required=True, help="saved LoRA adapter folder(s)")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


if __name__ == "__main__":
    main()
