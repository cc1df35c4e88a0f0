"""The item-side head (lpt_core.training.item_head) on the real data, with no LLM at all: test
NDCG@10 / Recall@10 of the raw history text as the query, ranked by the frozen encoder's cosine
(untrained) and through a linear and a hybrid head fitted on the train rows' history texts (early
stopping on every val row), beside popularity. Catalogue, split and ranking are the pipeline's.

The split is built from data/raw with the recipe (default `full`) by the call the data assets make
(lpt_core.data.preparation); the encoder is the recipe's (all-MiniLM-L6-v2).
The head settings are the recipe's evaluation.head, its kind set per row. Writes the table to
bench/results/recommender_head.md.

    python bench/recommender_head.py [--recipe full] [--train-users N] [--threads 2] [--cache FILE]

Embedding the ~8k history texts takes most of the time on a CPU (about 20 minutes on a shared
2-core machine); --cache keeps the embeddings, so a rerun with other head settings takes seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch

from lpt_core import text
from lpt_core.baselines import EvalContext, evaluate_methods
from lpt_core.config import load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.data.splitting import train_item_counts
from lpt_core.metrics import summarise
from lpt_core.models import load_encoder
from lpt_core.profiles import first_train_users
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import HeadExamples, fit_item_head

RESULTS = Path(__file__).resolve().parent / "results" / "recommender_head.md"


def cached(
    path: Path | None, key: str, compute: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """`compute()`'s arrays, read from `path` when it holds them under `key` (then True), else
    computed and written there (embedding ~8k history texts takes most of the run on a CPU)."""
    if path is not None and path.is_file():
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return {name: stored[name] for name in stored.files if name != "key"}, True
    arrays = compute()
    if path is not None:
        with path.open("wb") as file:
            np.savez(file, key=key, **arrays)
    return arrays, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--train-users", type=int, default=None, help="first N train users (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="file keeping the text embeddings between runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    started = time.perf_counter()

    cleaned, split = prepare_data(recipe)
    examples, catalog = split.examples, split.catalog
    frames = {"train": first_train_users(examples, args.train_users),
              **{name: examples.filter(pl.col("split") == name) for name in ("val", "test")}}
    # Popularity and the head's popularity prior count every train user's interactions, as the report does.
    item_counts = train_item_counts(cleaned.interactions, examples)
    encoder = TextEncoder(load_encoder(recipe.models.encoder, recipe.models))

    def embed() -> dict[str, np.ndarray]:
        texts = {name: text.history_texts(frame, catalog) for name, frame in frames.items()}
        return {"items": encoder.encode(catalog["text"].to_list()),
                **{name: encoder.encode(texts[name]) for name in frames}}

    # The embeddings depend on the data, split and encoder only, not on the head's settings.
    key = json.dumps([recipe.model_dump(mode="json", include={"data", "split", "models"}), args.train_users])
    embeddings, from_cache = cached(args.cache, key, embed)
    base = ItemIndex.build(catalog["item_id"].to_list(), embeddings["items"])
    rows = {
        name: HeadExamples(embeddings[name], base.positions(frame["target_item_id"].to_list()),
                           [base.positions(h) for h in frame["history_item_ids"].to_list()])
        for name, frame in frames.items()
    }
    test = frames["test"]
    ctx = EvalContext(
        examples=test, index=base, encoder=encoder, item_text={}, seed=recipe.evaluation.seed,
        train_item_counts=item_counts,
    )
    ranks = evaluate_methods(ctx, ["popularity"])
    ranks["history_text (untrained)"] = base.target_ranks(embeddings["test"], ctx.targets, ctx.histories)
    fits = {}
    for kind in ("linear", "hybrid"):
        fit_started = time.perf_counter()
        name = f"history_text + {kind} head"
        head_cfg = recipe.evaluation.head.model_copy(update={"kind": kind})
        fitted = fit_item_head(
            base.vectors, rows["train"], rows["val"], head_cfg, recipe.evaluation.seed,
            item_counts=np.array([item_counts.get(i, 0) for i in base.item_ids.tolist()]),
        )
        index = fitted.head.index(base.item_ids.tolist(), base.vectors)
        ranks[name] = index.target_ranks(embeddings["test"], ctx.targets, ctx.histories)
        fits[name] = (f"from scale {fitted.start.scale:g}, {fitted.start.bias_init} bias: "
                      f"best epoch {fitted.best_epoch} of {len(fitted.history) - 1}, val NDCG@10 "
                      f"{fitted.best_val_ndcg:.4f} (untrained {fitted.history[0]['val_ndcg@10']:.4f}), "
                      f"{time.perf_counter() - fit_started:.0f} s")
        print(f"{name}: {fits[name]}")

    header = (
        f"{args.recipe} recipe, test split: {test.height} rows of {test['user_id'].n_unique()} users, "
        f"{len(base)} items; heads fitted on {frames['train'].height} train rows of {frames['train']['user_id'].n_unique()} users, "
        f"early stopping on {frames['val'].height} val rows; encoder {recipe.models.encoder} (frozen); "
        f"history texts in the history_text row's format; head settings "
        f"{recipe.evaluation.head.model_dump(exclude={'kind'})}; {time.perf_counter() - started:.0f} s in all"
        f"{' (text embeddings read from the cache)' if from_cache else ''}."
    )
    lines = ["| method | NDCG@10 | Recall@10 | fit |", "|---|---:|---:|---|"]
    for name, method_ranks in ranks.items():
        values = summarise(method_ranks, (10,))
        lines.append(f"| {name} | {values['ndcg@10']:.4f} | {values['recall@10']:.4f} | {fits.get(name, '')} |")
    command = "python bench/recommender_head.py " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items() if value is not None
    )
    report = "\n".join(["# Item-side head on the raw history text (no LLM)", "", f"Command: `{command}`", "",
                        header, "", *lines, ""])
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
