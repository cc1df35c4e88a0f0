"""How much of the RL reward's difference between two profiles of one prompt is signal?

REBEL learns from the reward difference of two sampled profiles of the same user. If that
difference were a property of the profiles (one describes the user's taste better), the better
sample under the reward should also be the better one at predicting the user's OTHER future
items. This bench measures exactly that on a finished run's data, with the run's own reward
recommender (profile_head's fit, as the report fits it: the same head langptune_hybrid's reward
ranks through):

- the RL users (training.rl_users) with all `split.windows_per_user` windows; each user's first
  window is the prompt, --samples profiles sampled at the RL temperature;
- for every sample, the rank of each of the user's window targets (window w's target comes
  w * window_stride interactions after window 0's), history excluded;
- the reward of a sample = the mean reward (ndcg, mrr or log_rank) over the next k window targets,
  k = 1 being the method's reward, or over the next item and the k - 1 interactions after it
  (rl.reward_targets_from: next_interactions; "k interactions" rows); the held-out check = the
  mean over the later windows (from --held-out-from on), which no reward variant sees;
- per prompt, every pair of samples: does the reward's preferred sample also win held-out? 50%
  is a coin; the 95% interval resamples prompts;
- per prompt, the held-out value of the sample the reward picks minus the prompt's mean: what a
  best-of-n step selects on held-out items, at most what imitating the pick can teach (the oracle
  row picks by the held-out items themselves: the ceiling).

    python bench/studies/reward_signal.py --work .lpt --recipe full [--samples 6] [--users 64]

Prints a markdown table. Generation runs on the recipe's backend and dtype; the rest is seconds.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from lpt_core.catalog_index import base_catalog_index
from lpt_core.config import load_recipe
from lpt_core.data.splitting import train_item_counts
from lpt_core.evaluation import head_training
from lpt_core.generation.factory import make_generator
from lpt_core.training.alternation import TrainingData, rl_rows
from lpt_core.training.examples import rl_examples
from lpt_core.training.item_head import fit_head_on_texts
from lpt_core.training.reward import REWARD_KINDS, reward_from_ranks

TARGET_COUNTS = (1, 2, 4)
# rl.reward_targets with reward_targets_from next_interactions: the next item and the k - 1
# interactions after it (with the full recipe's stride of 3, interactions 10-21 of the user for a
# first window: all before window 4's target, the first held-out one).
INTERACTION_COUNTS = (4, 12)


def main() -> None:
    args = _arguments()
    torch.manual_seed(args.seed)
    recipe = load_recipe(args.recipe)
    ev, windows = recipe.evaluation, recipe.split.windows_per_user
    if args.held_out_from <= max(TARGET_COUNTS) - 1 or args.held_out_from >= windows:
        raise SystemExit(f"--held-out-from must be in [{max(TARGET_COUNTS)}, {windows - 1}]")
    outputs = args.work / "outputs"
    tables = {name: pl.read_parquet(outputs / f"{name}.parquet")
              for name in ("user_examples", "item_catalog", "cleaned_items", "cleaned_histories", "zero_shot_profiles")}
    examples, catalog = tables["user_examples"], tables["item_catalog"]

    built = base_catalog_index(catalog, recipe.models)
    encoder, base = built.encoder, built.index
    train, val = head_training(ev, examples, catalog, tables["zero_shot_profiles"]).rows["profile"]
    counts = train_item_counts(tables["cleaned_histories"], examples)
    fitted = fit_head_on_texts(encoder, base, train, val, ev.head, ev.seed, item_counts=counts)
    index = fitted.head.index(base.item_ids.tolist(), base.vectors)

    data = TrainingData.from_tables(examples, tables["cleaned_items"], catalog, tables["cleaned_histories"], recipe)
    rl = rl_rows(data.train, recipe.training)
    complete = rl.group_by("user_id").len().filter(pl.col("len") == windows)["user_id"]
    rl = rl.filter(pl.col("user_id").is_in(complete.implode()))
    prompts = rl.filter(pl.col("window") == 0).head(args.users)
    targets = {user: group.sort("window")["target_item_id"].to_list() for (user,), group in rl.group_by("user_id")}

    gen_cfg = recipe.generation.model_copy(update={"do_sample": True, "temperature": recipe.training.rl.sampling.temperature,
                                                   "seed": args.seed})
    generator = make_generator(recipe.models.generator, recipe.models, gen_cfg)
    started = time.perf_counter()
    texts = [p.text for p in generator.generate([p for p in prompts["prompt"].to_list() for _ in range(args.samples)])]
    seconds = time.perf_counter() - started

    queries = encoder.encode(texts)
    users = np.repeat(prompts["user_id"].to_numpy(), args.samples)
    histories = [list(h) for h in prompts["history_item_ids"].to_list() for _ in range(args.samples)]
    ranks = _ranks_of(index, queries, [targets[u] for u in users], histories).reshape(prompts.height, args.samples, windows)
    following = _next_interactions(rl, max(INTERACTION_COUNTS))
    interaction_ranks = _ranks_of(index, queries, [following[u] for u in users], histories).reshape(
        prompts.height, args.samples, -1)

    print(f"{args.work} ({args.recipe}): {prompts.height} RL users' first windows x {args.samples} samples at "
          f"temperature {gen_cfg.temperature} ({seconds:.0f} s to sample); reward recommender: profile_head's fit "
          f"(best epoch {fitted.best_epoch}, val NDCG@10 {fitted.best_val_ndcg:.4f}); held out: the targets of "
          f"windows {args.held_out_from}-{windows - 1}\n")
    print("| reward | next k targets | pairs agreeing with held-out [95% CI] | within-prompt corr | "
          "reward std within / between prompts | held-out: the reward's best sample minus the mean sample [95% CI] |")
    print("|---|---:|---|---:|---|---|")
    rng = np.random.default_rng(args.seed)
    for kind in REWARD_KINDS:
        rewards = reward_from_ranks(ranks, kind, len(index))
        held_out = rewards[:, :, args.held_out_from:].mean(-1)
        for k in TARGET_COUNTS:
            _print_row(kind, f"{k}", rewards[:, :, :k].mean(-1), held_out, rng, args.bootstrap)
        interaction_rewards = reward_from_ranks(interaction_ranks, kind, len(index))
        for k in INTERACTION_COUNTS:
            reward = np.nanmean(interaction_rewards[:, :, :k], axis=-1)
            _print_row(kind, f"{k} interactions", reward, held_out, rng, args.bootstrap)
        # The ceiling: choosing by the held-out items themselves.
        _print_row(kind, "held-out (oracle)", held_out, held_out, rng, args.bootstrap)


def _print_row(kind: str, targets: str, reward: np.ndarray, held_out: np.ndarray, rng: np.random.Generator,
               bootstrap: int) -> None:
    agree = _pair_agreement(reward, held_out)
    # What best-of-n can pass on at most: how much better the chosen profile is on held-out items
    # than a profile drawn at random from the same prompt.
    gain = held_out[np.arange(len(reward)), reward.argmax(1)] - held_out.mean(1)
    boot = [np.nanmean(agree[rng.integers(0, len(agree), len(agree))]) for _ in range(bootstrap)]
    gain_boot = [gain[rng.integers(0, len(gain), len(gain))].mean() for _ in range(bootstrap)]
    corr = np.nanmean([np.corrcoef(r, h)[0, 1] for r, h in zip(reward, held_out) if r.std() > 0 and h.std() > 0])
    print(f"| {kind} | {targets} | {np.nanmean(agree):.3f} [{np.percentile(boot, 2.5):.3f}, "
          f"{np.percentile(boot, 97.5):.3f}] | {corr:+.3f} | {reward.std(1).mean():.4f} / {reward.mean(1).std():.4f} "
          f"| {gain.mean():+.4f} [{np.percentile(gain_boot, 2.5):+.4f}, {np.percentile(gain_boot, 97.5):+.4f}] |")


def _next_interactions(rl: pl.DataFrame, count: int) -> dict[str, list[str]]:
    """Per user: the first window's next item and up to count - 1 interactions after it
    (rl_examples' next_interactions rule: items of the window's history left out)."""
    examples = rl_examples(rl, count, "next_interactions")
    return {user: [example.target_item_id, *example.later_target_ids]
            for user, window, example in zip(rl["user_id"], rl["window"], examples) if window == 0}


def _ranks_of(index, queries: np.ndarray, items: list[list[str]], histories: list[list[str]]) -> np.ndarray:
    """ranks[i, j]: the rank of items[i][j] for query i (history excluded); NaN past a row's items."""
    width = max(len(row) for row in items)
    ranks = np.full((len(items), width), np.nan)
    for j in range(width):
        has = np.array([len(row) > j for row in items])
        column = index.target_ranks(queries, [row[j] if len(row) > j else row[0] for row in items], histories)
        ranks[:, j] = np.where(has, column, np.nan)
    return ranks


def _pair_agreement(reward: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """Per prompt, the share of sample pairs (both differences non-zero) whose reward difference
    has the sign of their held-out difference; NaN for a prompt without such a pair."""
    shares = []
    for r, h in zip(reward, held_out):
        signs = [np.sign(r[a] - r[b]) == np.sign(h[a] - h[b])
                 for a, b in itertools.combinations(range(len(r)), 2) if r[a] != r[b] and h[a] != h[b]]
        shares.append(np.mean(signs) if signs else np.nan)
    return np.array(shares)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a run's work folder ($LPT_HOME) with zero-shot profiles")
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--samples", type=int, default=6, help="profiles sampled per prompt")
    parser.add_argument("--users", type=int, default=64, help="RL users (prompts), at most")
    parser.add_argument("--held-out-from", type=int, default=4, help="first window whose target is held out")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
