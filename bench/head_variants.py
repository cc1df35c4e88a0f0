"""Can any item head make the zero-shot profile beat popularity? Head settings on a finished run's
stored profiles (no generation).

Every row fits the item head (lpt_core.training.item_head) with one setting, early-stopped on the
PROFILES of every val window (the queries the head serves), and ranks the test windows' zero-shot
and trained profiles with it. The settings: the recipe's head; the untrained head (cosine at a
scale plus the popularity prior, no fitting) at several scales; a linear head with weight decay;
the hybrid head with a stronger residual penalty or a lower learning rate; and heads fitted on the
raw history texts of the same windows (or of every train window, --all-history) instead of the
profiles, so the item side learns from the text where the signal is strong while the user side
stays the profile. Test NDCG@10 with paired user-bootstrap 95% intervals against popularity, and
trained minus zero-shot under each head.

    python bench/head_variants.py --work .lpt --recipe full --variant best_of_n_hybrid [--all-history]
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
from finished_run import FinishedRun, run_arguments

from lpt_core import metrics, text
from lpt_core.config import ItemHeadConfig
from lpt_core.evaluation import head_training, variant_profiles
from lpt_core.profiles import profiles_for
from lpt_core.retrieval import ranks_in_chunks
from lpt_core.training.item_head import HeadExamples, TextRows, fit_item_head, popularity_prior


def main() -> None:
    args = _arguments()
    run = FinishedRun.load(args.work, args.recipe)
    ev, examples, catalog = run.recipe.evaluation, run.examples, run.catalog
    encoder, base = run.base_recommender()
    counts = run.item_counts()
    popularity = np.array([counts.get(item, 0) for item in base.item_ids.tolist()])
    zero_shot = run.table("zero_shot_profiles")
    rows = head_training(ev, examples, catalog, zero_shot).rows
    started = time.perf_counter()
    (profile_train, profile_val), (history_train, _) = (
        (train.encoded(encoder, base), val.encoded(encoder, base)) for train, val in (rows["profile"], rows["history_text"])
    )
    fit_rows = {"profile rows": profile_train, "history-text rows": history_train,
                "history-text + profile rows": _joined(history_train, profile_train)}
    if args.all_history:
        every = examples.filter(pl.col("split") == "train")
        fit_rows["every train window's history text"] = TextRows.of(every, text.history_texts(every, catalog)).encoded(encoder, base)
    test = examples.filter(pl.col("split") == ev.split)
    queries = {"zero-shot": encoder.encode(profiles_for(test, zero_shot)),
               "trained": encoder.encode(profiles_for(test, variant_profiles(run.table("trained_profiles"), args.variant)))}
    print(f"embedded the rows and test queries in {time.perf_counter() - started:.0f} s")
    targets, histories, users = test["target_item_id"].to_list(), test["history_item_ids"].to_list(), test["user_id"].to_list()
    prior = popularity_prior(popularity)
    popular = ranks_in_chunks(lambda _: prior[None, :], base.positions(targets), [base.positions(h) for h in histories], len(prior))
    recipe_head = ev.head
    print(f"\n{args.work}, variant {args.variant}: {ev.split} split, {test.height} windows of {len(set(users))} users; "
          f"head fitted on {len(profile_train.targets)} train windows, stopped on {len(profile_val.targets)} val windows' profiles. "
          f"Popularity: test NDCG@10 {metrics.summarise(popular, (10,))['ndcg@10']:.4f}\n")
    print("| head | fitted on | kept start (scale, bias) | best epoch | val NDCG@10 | test zero-shot | minus popularity [95%] | trained minus zero-shot [95%] |")
    print("|---|---|---|---:|---:|---:|---|---|")
    for name, cfg, fitted_on in _settings(recipe_head, fit_rows):
        fit = fit_item_head(base.vectors, fit_rows[fitted_on], profile_val, cfg, ev.seed, item_counts=popularity)
        index = fit.head.index(base.item_ids.tolist(), base.vectors)
        ranks = {"popularity": popular, **{k: index.target_ranks(q, targets, histories) for k, q in queries.items()}}
        print(_row(name, fitted_on, fit, ranks, users, ev))


def _settings(recipe_head: ItemHeadConfig, fit_rows: dict) -> list[tuple[str, ItemHeadConfig, str]]:
    """(name, head config, rows it fits on) of every row of the table."""
    settings = [("recipe's head", recipe_head, "profile rows")]
    for scale in (1.0, 2.0, 5.0, 10.0):
        # One epoch at a vanishing learning rate: the fit's epoch 0 (the untrained head) is kept.
        settings.append((f"untrained, scale {scale:g}", recipe_head.model_copy(
            update={"scale": scale, "other_starts": (), "epochs": 1, "learning_rate": 1e-12}), "profile rows"))
    for decay in (1.0, 10.0):
        settings.append((f"linear, weight decay {decay:g}", recipe_head.model_copy(
            update={"kind": "linear", "weight_decay": decay}), "profile rows"))
    settings.append(("hybrid, residual_l2 0.1", recipe_head.model_copy(update={"residual_l2": 0.1}), "profile rows"))
    settings.append(("hybrid, learning rate 1e-4", recipe_head.model_copy(
        update={"learning_rate": 1e-4, "patience": 5}), "profile rows"))
    settings += [("recipe's head", recipe_head, rows) for rows in fit_rows if rows != "profile rows"]
    return settings


def _joined(*parts: HeadExamples) -> HeadExamples:
    return HeadExamples(np.concatenate([p.queries for p in parts]), np.concatenate([p.targets for p in parts]),
                        [h for p in parts for h in p.histories])


def _row(name: str, fitted_on: str, fit, ranks: dict[str, np.ndarray], users: list[str], ev) -> str:
    result = metrics.paired_bootstrap(ranks, users, (10,), ev.bootstrap_samples, ev.confidence, ev.seed, "popularity")
    over = result.differences["zero-shot - popularity"]["ndcg@10"]
    pair = {k: ranks[k] for k in ("zero-shot", "trained")}
    trained = metrics.paired_bootstrap(pair, users, (10,), ev.bootstrap_samples, ev.confidence, ev.seed,
                                       "zero-shot").differences["trained - zero-shot"]["ndcg@10"]
    return (f"| {name} | {fitted_on} | {fit.start.scale:g}, {fit.start.bias_init} | {fit.best_epoch} | {fit.best_val_ndcg:.4f} "
            f"| {result.methods['zero-shot']['ndcg@10'].mean:.4f} | {_cell(over)} | {_cell(trained)} |")


def _cell(interval: metrics.Interval) -> str:
    return f"{interval.mean:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"


def _arguments():
    parser = run_arguments(__doc__)
    parser.add_argument("--variant", required=True, help="the trained variant whose test profiles to rank too")
    parser.add_argument("--all-history", action="store_true",
                        help="add a head fitted on every train window's history text (about 8 minutes to embed on 2 cores)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
