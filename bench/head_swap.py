"""A finished run's zero-shot and trained test profiles, each under every recommender the run has:
profile_head's fit (a head fitted on zero-shot train profiles, as the evaluation report fits it),
the variant's own trained recommender, and plain cosine over the base encoder. Under one fixed
recommender, trained minus zero-shot is what the LLM's training alone changed.

    python bench/head_swap.py --work .lpt --recipe full --variant langptune_hybrid

Prints a markdown table of NDCG@10 with paired user-bootstrap 95% intervals of trained minus
zero-shot per recommender (the report's bootstrap settings). Only reads the run's folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from finished_run import FinishedRun, run_arguments

from lpt_core import metrics
from lpt_core.evaluation import head_training, variant_profiles
from lpt_core.models import load_encoder
from lpt_core.profiles import profiles_for
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import TextRows, fit_head_on_texts


def main() -> None:
    args = _arguments()
    run = FinishedRun.load(args.work, args.recipe)
    recipe, ev, outputs, examples, catalog = run.recipe, run.recipe.evaluation, run.outputs, run.examples, run.catalog
    evaluated = examples.filter(pl.col("split") == ev.split)
    zero_shot = pl.read_parquet(outputs / "zero_shot_profiles.parquet")
    profiles = {
        "zero-shot": profiles_for(evaluated, zero_shot),
        "trained": profiles_for(evaluated, variant_profiles(pl.read_parquet(outputs / "trained_profiles.parquet"), args.variant)),
    }
    encoder, base = run.base_recommender()
    train, val = head_training(ev, examples, catalog, zero_shot).rows["profile"]
    counts = run.item_counts()
    fitted = fit_head_on_texts(encoder, base, train, val, ev.head, ev.seed, item_counts=counts)
    own = outputs / "trained_item_index" / args.variant
    recommenders = {
        f"profile_head's fit (best epoch {fitted.best_epoch})": (encoder, fitted.head.index(base.item_ids.tolist(), base.vectors)),
        f"{args.variant}'s own": (TextEncoder(load_encoder(str(_encoder_dir(outputs, args.variant)), recipe.models)), ItemIndex.load(own)),
        "plain cosine (base encoder)": (encoder, base),
    }
    rows = TextRows([], evaluated["target_item_id"].to_list(), evaluated["history_item_ids"].to_list())
    print(f"{args.work}: {ev.split} split, {evaluated.height} examples, {evaluated['user_id'].n_unique()} users\n")
    print("| recommender | zero-shot NDCG@10 | trained NDCG@10 | trained - zero-shot [95% CI] |")
    print("|---|---:|---:|---|")
    for name, (query_encoder, index) in recommenders.items():
        ranks = {
            kind: index.target_ranks(query_encoder.encode(texts), rows.targets, rows.histories)
            for kind, texts in profiles.items()
        }
        result = metrics.paired_bootstrap(
            ranks, evaluated["user_id"].to_list(), (10,), ev.bootstrap_samples, ev.confidence, ev.seed, "zero-shot"
        )
        diff = result.differences["trained - zero-shot"]["ndcg@10"]
        print(
            f"| {name} | {result.methods['zero-shot']['ndcg@10'].mean:.4f} | {result.methods['trained']['ndcg@10'].mean:.4f} "
            f"| {diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] |"
        )


def _encoder_dir(outputs: Path, variant: str) -> Path:
    """The encoder of the variant's last training phase (the one its trained index was built with)."""
    phases = sorted(p for p in (outputs / "training" / variant).iterdir() if (p / "encoder").is_dir())
    return phases[-1] / "encoder"


def _arguments() -> argparse.Namespace:
    parser = run_arguments(__doc__)
    parser.add_argument("--variant", required=True)
    return parser.parse_args()


if __name__ == "__main__":
    main()
