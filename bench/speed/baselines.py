"""Training, tuning and scoring time of the history baselines (SASRec, item-kNN) on MovieLens-100K,
with their test-user metrics beside popularity's, all ranked by the shared rank_targets.

Uses the pipeline's processed split (.lpt/outputs/{user_examples,cleaned_histories,item_catalog}
.parquet) when present, otherwise builds it from data/raw/ml-100k with the quick recipe as the data
assets do (lpt_core.data.preparation; the recipe's tokenizers must be fetched). The default budget
is the quick recipe's (tuning.BaselineSearch); `--trials 1 --epochs 5` is a fast smoke run. One
torch thread by default: on this oversubscribed 2-core machine it is ~10x faster than two. Figures
are noisy.

    python bench/speed/baselines.py [--trials N] [--epochs N] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import polars as pl

from lpt_core.config import load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.metrics import summarise
from lpt_core.paths import outputs_dir
from lpt_core.recommenders.scoring import target_ranks
from lpt_core.recommenders.sequences import baseline_data, example_positions
from lpt_core.recommenders.tuning import BaselineSearch, Trial, torch_threads, tune_baselines
from lpt_core.retrieval import rank_targets

KS = (10, 20)
COLUMNS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
T = TypeVar("T")


def load_split() -> tuple[pl.DataFrame, pl.DataFrame, list[str], str]:
    """(cleaned histories, user examples, catalogue item ids, where they came from)."""
    folder = outputs_dir()
    files = [folder / f"{name}.parquet" for name in ("cleaned_histories", "user_examples", "item_catalog")]
    if all(path.is_file() for path in files):
        histories, examples, catalog = (pl.read_parquet(path) for path in files)
        return histories, examples, catalog["item_id"].to_list(), f"pipeline outputs in {folder}"
    cleaned, split = prepare_data(load_recipe("quick"))
    return (cleaned.interactions, split.examples, split.catalog["item_id"].to_list(),
            "built from data/raw with the quick recipe")


def timed(label: str, step: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    print(f"  {label:<34} {seconds:8.2f} s")
    return result, seconds


def print_trial(method: str, trial: Trial) -> None:
    epochs = f", {trial.details['epochs_run']} epochs (best {trial.details['best_epoch']})" if trial.details else ""
    print(f"    {method:<8} {trial.settings}  val={trial.metric:.4f}  {trial.seconds:.1f} s{epochs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=BaselineSearch.sasrec_trials)
    parser.add_argument("--epochs", type=int, default=BaselineSearch.epochs)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    histories, examples, item_ids, source = load_split()
    data = baseline_data(histories, examples, item_ids)
    test = examples.filter(pl.col("split") == "test")
    test_histories, test_targets = example_positions(test, item_ids)
    print(f"MovieLens-100K ({source}): {len(data.train_sequences)} train users "
          f"({sum(map(len, data.train_sequences))} interactions), {len(data.val_targets)} val rows, "
          f"{test.height} test rows, {data.n_items} items; torch threads {args.threads}")

    search = dataclasses.replace(BaselineSearch(), sasrec_trials=args.trials, epochs=args.epochs, threads=args.threads)
    print(f"search: SASRec {search.sasrec_trials} trials x <= {search.epochs} epochs (patience "
          f"{search.patience}) over {dict(search.sasrec_grid)}; item-kNN k {list(search.knn_neighbours)} "
          f"x {list(search.knn_similarities)}; criterion val {search.metric}")
    results, tune_seconds = timed("tuning both (train + select on val)",
                                  lambda: tune_baselines(data, search, print_trial))

    counts = np.bincount(np.concatenate([np.asarray(s) for s in data.train_sequences]), minlength=data.n_items)
    ranks = {"popularity": rank_targets(counts[None, :].astype(np.float64), test_targets, test_histories)}
    for name, result in results.items():
        with torch_threads(args.threads):
            ranks[name], seconds = timed(f"scoring {test.height} test rows: {name}",
                                         lambda r=result: target_ranks(r.model, test_histories, test_targets))
        print(f"    {name}: chosen {result.settings}, val {search.metric} {result.metric:.4f}, "
              f"{test.height / seconds:,.0f} rows/s")
    sasrec_trial = np.mean([t.seconds for t in results["sasrec"].trials])
    knn_fit = np.mean([t.seconds for t in results["item_knn"].trials])
    print(f"tuning total {tune_seconds:.1f} s; training per SASRec trial {sasrec_trial:.1f} s, per item-kNN "
          f"fit {knn_fit:.2f} s (ratio {sasrec_trial / knn_fit:,.0f}x)")
    print(f"\ntest users ({test['user_id'].n_unique()} users, {test.height} rows), history excluded:")
    print(f"  {'method':<12}" + "".join(f"{key:>12}" for key in COLUMNS))
    for name, method_ranks in ranks.items():
        metrics = summarise(method_ranks, KS)
        print(f"  {name:<12}" + "".join(f"{metrics[key]:12.4f}" for key in COLUMNS))


if __name__ == "__main__":
    main()
