"""A finished run's zero-shot and trained test profiles, each under every recommender the run has:
profile_head's fit (a head fitted on zero-shot train profiles, as the evaluation report fits it),
the variant's own trained recommender, and plain cosine over the base encoder. Under one fixed
recommender, trained minus zero-shot is what the LLM's training alone changed.

    python bench/studies/head_swap.py --work .lpt --recipe full --variant langptune_hybrid

Prints a markdown table of NDCG@10 and of full-rank NDCG (no cutoff: what the writer's rank
rewards pay for moving a target anywhere in the ranking) with paired user-bootstrap 95% intervals of
trained minus zero-shot per recommender (the report's bootstrap settings). Only reads the run's
folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finished_run import FinishedRun, run_arguments

from lpt_core import metrics
from lpt_core.evaluation import head_training, variant_profiles
from lpt_core.models import load_encoder
from lpt_core.profiles import profiles_for
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import TextRows, fit_head_on_texts

Recommenders = dict[str, tuple[TextEncoder, ItemIndex]]


def main() -> None:
    args = _arguments()
    run = FinishedRun.load(args.work, args.recipe)
    evaluated = run.evaluated()
    outputs = run.outputs
    trained = variant_profiles(run.table("trained_profiles"), args.variant)
    own = (TextEncoder(load_encoder(str(_encoder_dir(outputs, args.variant)), run.recipe.models)),
           ItemIndex.load(outputs / "trained_item_index" / args.variant))
    recommenders = {**fixed_recommenders(run), f"{args.variant}'s own": own}
    print(f"{args.work}: {run.recipe.evaluation.split} split, {evaluated.height} examples, "
          f"{evaluated['user_id'].n_unique()} users\n")
    print(comparison_table(run, recommenders, profiles_for(evaluated, trained)))


def fixed_recommenders(run: FinishedRun) -> Recommenders:
    """The recommenders that stay the same whatever writer is compared: profile_head's fit (the
    evaluation's, refitted with its settings and rows) and plain cosine over the base encoder."""
    ev = run.recipe.evaluation
    encoder, base = run.base_recommender()
    train, val = head_training(ev, run.examples, run.catalog, run.table("zero_shot_profiles")).rows["profile"]
    fitted = fit_head_on_texts(encoder, base, train, val, ev.head, ev.seed, item_counts=run.item_counts())
    return {
        f"profile_head's fit (best epoch {fitted.best_epoch})": (encoder, fitted.head.index(base.item_ids.tolist(), base.vectors)),
        "plain cosine (base encoder)": (encoder, base),
    }


def comparison_table(run: FinishedRun, recommenders: Recommenders, trained: list[str]) -> str:
    """Markdown: the run's zero-shot profiles of the evaluated split against `trained` (one per
    evaluated row, in order) under each recommender, at NDCG@10 and full-rank NDCG."""
    ev = run.recipe.evaluation
    evaluated = run.evaluated()
    profiles = {"zero-shot": profiles_for(evaluated, run.table("zero_shot_profiles")), "trained": trained}
    rows = TextRows([], evaluated["target_item_id"].to_list(), evaluated["history_item_ids"].to_list())
    cutoffs = (10, run.catalog.height)  # a cutoff at the catalogue's size is full-rank NDCG
    lines = [
        "| recommender | NDCG@10, zero-shot -> trained | trained - zero-shot [95% CI] "
        "| full-rank NDCG, zero-shot -> trained | trained - zero-shot [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for name, (query_encoder, index) in recommenders.items():
        ranks = {
            kind: index.target_ranks(query_encoder.encode(texts), rows.targets, rows.histories)
            for kind, texts in profiles.items()
        }
        result = metrics.paired_bootstrap(
            ranks, evaluated["user_id"].to_list(), cutoffs, ev.bootstrap_samples, ev.confidence, ev.seed, "zero-shot"
        )
        cells = [name]
        for cutoff in cutoffs:
            key = f"ndcg@{cutoff}"
            before, after = result.methods["zero-shot"][key].mean, result.methods["trained"][key].mean
            diff = result.differences["trained - zero-shot"][key]
            cells += [f"{before:.4f} -> {after:.4f}", f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]"]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


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
