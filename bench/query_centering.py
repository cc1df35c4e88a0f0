"""Does centring the query embeddings let the item head use the profile?

Every zero-shot profile opens alike ("This user's movie preferences are ..."), so their embeddings
share one large component, and q . v_i carries a user-independent "generic prose about movies"
score per item that the head's popularity-prior bias has to unlearn before the profile's own
signal shows. Subtracting the mean train query embedding (mu) removes it; for a fitted head it is
the same as a per-item bias shift (-mu . v_i), so it changes nothing a served index cannot hold.

On a finished run's stored profiles (no generation): the recipe's evaluation head (profile_head's
settings, rows and seed) fitted on the zero-shot train profiles, raw and centred, and plain cosine
raw and centred; test NDCG@10 of the zero-shot and of a trained variant's profiles under each, with
paired user-bootstrap 95% intervals (centred minus raw; trained minus zero-shot). --history-text
adds the no-LLM rows (embedding the history texts takes minutes on a CPU).

    python bench/query_centering.py --work .lpt --recipe full --variant best_of_n_hybrid [--history-text]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import polars as pl
from finished_run import FinishedRun, run_arguments

from lpt_core import metrics, text
from lpt_core.evaluation import head_training, variant_profiles
from lpt_core.profiles import profiles_for
from lpt_core.training.item_head import HeadExamples, fit_item_head


def main() -> None:
    args = _arguments()
    run = FinishedRun.load(args.work, args.recipe)
    ev, outputs, examples, catalog = run.recipe.evaluation, run.outputs, run.examples, run.catalog
    test = examples.filter(pl.col("split") == ev.split)
    zero_shot = pl.read_parquet(outputs / "zero_shot_profiles.parquet")
    trained = variant_profiles(pl.read_parquet(outputs / "trained_profiles.parquet"), args.variant)
    encoder, base = run.base_recommender()
    counts = run.item_counts()
    popularity = np.array([counts.get(item, 0) for item in base.item_ids.tolist()])
    rows = head_training(ev, examples, catalog, zero_shot).rows
    # query kind -> (rows the head fits on, {test query name: test texts})
    kinds = {"profile": (rows["profile"], {"zero-shot": profiles_for(test, zero_shot),
                                           args.variant: profiles_for(test, trained)})}
    if args.history_text:
        kinds["history_text"] = (rows["history_text"], {"history text": text.history_texts(test, catalog)})
    targets, histories = test["target_item_id"].to_list(), test["history_item_ids"].to_list()
    users = test["user_id"].to_list()
    print(f"{args.work}: {ev.split} split, {test.height} rows, {len(set(users))} users; head {ev.head.kind}, "
          f"starts {[(s.scale, s.bias_init) for s in ev.head.starts]}\n")
    print("| query | recommender | raw NDCG@10 | centred NDCG@10 | centred - raw [95%] | head: best epoch, val NDCG@10 raw / centred |")
    print("|---|---|---:|---:|---|---|")
    ranks: dict[str, np.ndarray] = {}
    for (train, val), tests in kinds.values():
        train_ex, val_ex = train.encoded(encoder, base), val.encoded(encoder, base)
        mean = train_ex.queries.mean(axis=0)
        test_queries = {name: encoder.encode(texts) for name, texts in tests.items()}
        fits = {}
        for centred, shift in (("raw", 0.0), ("centred", mean)):
            fit = fit_item_head(base.vectors, _shifted(train_ex, shift), _shifted(val_ex, shift), ev.head, ev.seed,
                                item_counts=popularity)
            fits[centred] = fit
            head_index = fit.head.index(base.item_ids.tolist(), base.vectors)
            for name, queries in test_queries.items():
                ranks[f"{name} | head | {centred}"] = head_index.target_ranks(queries - shift, targets, histories)
                ranks[f"{name} | cosine | {centred}"] = base.target_ranks(queries - shift, targets, histories)
        fitted = " / ".join(f"{f.best_epoch}, {f.best_val_ndcg:.4f}" for f in fits.values())
        for name in tests:
            for recommender in ("head", "cosine"):
                _print_row(name, recommender, ranks, users, ev, fitted if recommender == "head" else "")
    print()
    for recommender in ("head", "cosine"):
        for centred in ("raw", "centred"):
            pair = {k: ranks[f"{k} | {recommender} | {centred}"] for k in ("zero-shot", args.variant)}
            diff = metrics.paired_bootstrap(pair, users, (10,), ev.bootstrap_samples, ev.confidence, ev.seed,
                                            "zero-shot").differences[f"{args.variant} - zero-shot"]["ndcg@10"]
            print(f"{args.variant} - zero-shot, {recommender}, {centred}: {diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]")


def _shifted(rows: HeadExamples, shift: np.ndarray | float) -> HeadExamples:
    return dataclasses.replace(rows, queries=(rows.queries - shift).astype(np.float32))


def _print_row(name: str, recommender: str, ranks: dict, users: list[str], ev, fitted: str) -> None:
    pair = {centred: ranks[f"{name} | {recommender} | {centred}"] for centred in ("raw", "centred")}
    result = metrics.paired_bootstrap(pair, users, (10,), ev.bootstrap_samples, ev.confidence, ev.seed, "raw")
    diff = result.differences["centred - raw"]["ndcg@10"]
    print(f"| {name} | {recommender} | {result.methods['raw']['ndcg@10'].mean:.4f} "
          f"| {result.methods['centred']['ndcg@10'].mean:.4f} | {diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] "
          f"| {fitted} |")


def _arguments() -> argparse.Namespace:
    parser = run_arguments(__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--history-text", action="store_true", help="add the no-LLM rows (slow to embed)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
