"""Zero-shot profiles by prompt, under the item head: which way of asking lets the head learn
something from the profile beyond popularity?

bench/prompt_sweep.py measures prompts under plain cosine, where the recipe's profile already
keeps most of the history text's signal. Under the full recipe's hybrid head the profile keeps
none of it (profile_head = popularity, history_text_head 0.065): the head learns item-to-item
structure from the titles in a history text, and the recipe's prompt forbids titles. Here each
prompt's zero-shot profiles of the first --head-users train users' windows and of every val window
are written (through a profile store, seeded from a finished run's store so the recipe's own
prompt costs nothing), the recipe's evaluation head is fitted on them as profile_head is, and the
val NDCG@10 of the kept fit is compared, with the raw history text (no LLM) and popularity beside
it. Val only: it is the split the fit stops on, so it is a diagnostic, not a report.

    python bench/prompt_head.py --work .lpt --recipe full [--prompts recipe,titles] [--head-users 64]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
from finished_run import FinishedRun, run_arguments
from prompt_sweep import PROMPTS

from lpt_core import metrics, text
from lpt_core.config import PromptConfig
from lpt_core.generation import make_generator
from lpt_core.generation.store import ProfileStore
from lpt_core.profile_quality.copying import bare_title
from lpt_core.profiles import first_train_users, write_profiles
from lpt_core.retrieval import ItemIndex
from lpt_core.training.item_head import TextRows, fit_head_on_texts


def main() -> None:
    args = _arguments()
    run = FinishedRun.load(args.work, args.recipe)
    recipe, outputs, examples, catalog = run.recipe, run.outputs, run.examples, run.catalog
    ev, items = recipe.evaluation, run.table("cleaned_items")
    frames = {"train": first_train_users(examples, args.head_users), "val": examples.filter(pl.col("split") == "val")}
    if not args.store.exists():
        shutil.copyfile(outputs / "profile_store.parquet", args.store)  # the run's profiles, reused by key
    store = ProfileStore(args.store, chunk_size=4 * recipe.generation.batch_size)
    generator = make_generator(recipe.models.generator, recipe.models, recipe.generation)
    encoder, base = run.base_recommender()
    counts = run.item_counts()
    # Popularity as an index: a zero query scores every item by its bias alone.
    log_counts = np.log1p([counts.get(item, 0) for item in base.item_ids.tolist()]).astype(np.float32)
    popularity = ItemIndex.build(base.item_ids.tolist(), base.vectors, bias=log_counts)

    queries = {"raw history text (no LLM)": {split: text.history_texts(frame, catalog) for split, frame in frames.items()}}
    for name in args.prompts.split(","):
        prompt = PromptConfig.model_validate(recipe.prompt.model_dump() | (PROMPTS[name] or {}))
        prompted = recipe.model_copy(update={"prompt": prompt})
        started = time.perf_counter()
        written = {split: write_profiles(frame, items, generator, store, prompted) for split, frame in frames.items()}
        fresh = sum(count for _, count in written.values())
        print(f"{name}: {fresh} profiles generated in {time.perf_counter() - started:.0f} s", flush=True)
        queries[f"prompt {name!r}"] = {split: table["profile"].to_list() for split, (table, _) in written.items()}

    val = frames["val"]
    users = val["user_id"].to_list()
    ranks = {"popularity": popularity.target_ranks(np.zeros((val.height, base.vectors.shape[1]), np.float32),
                                                  val["target_item_id"].to_list(), val["history_item_ids"].to_list())}
    rows = []
    for name, texts in queries.items():
        train_rows, val_rows = TextRows.of(frames["train"], texts["train"]), TextRows.of(val, texts["val"])
        fit = fit_head_on_texts(encoder, base, train_rows, val_rows, ev.head, ev.seed, item_counts=counts)
        head_index = fit.head.index(base.item_ids.tolist(), base.vectors)
        ranks[name] = head_index.target_ranks(encoder.encode(val_rows.texts), val_rows.targets, val_rows.histories)
        rows.append((name, fit, _title_share(texts["val"], val, catalog), np.mean([len(t.split()) for t in texts["val"]])))
    result = metrics.paired_bootstrap(ranks, users, (10,), ev.bootstrap_samples, ev.confidence, ev.seed, "popularity")
    print(f"\n{args.work}: head fitted on the first {args.head_users} train users ({frames['train'].height} windows), "
          f"stopped on val ({val.height} windows, {len(set(users))} users); head {ev.head.kind}\n")
    print("| queries | val NDCG@10 (kept fit) | minus popularity [95%] | untrained | best epoch | words | naming a history title |")
    print("|---|---:|---|---:|---:|---:|---:|")
    print(f"| popularity | {result.methods['popularity']['ndcg@10'].mean:.4f} | | | | | |")
    for name, fit, titles, words in rows:
        diff = result.differences[f"{name} - popularity"]["ndcg@10"]
        print(f"| {name} | {result.methods[name]['ndcg@10'].mean:.4f} | {diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] "
              f"| {fit.history[0]['val_ndcg@10']:.4f} | {fit.best_epoch} | {words:.1f} | {titles:.0%} |")


def _title_share(profiles: list[str], frame: pl.DataFrame, catalog: pl.DataFrame) -> float:
    """Share of profiles naming at least one title of their own history (year left out)."""
    title = dict(catalog.select("item_id", "title").iter_rows())
    named = [
        any(bare_title(title[item]).lower() in profile.lower() for item in history)
        for profile, history in zip(profiles, frame["history_item_ids"].to_list(), strict=True)
    ]
    return float(np.mean(named))


def _arguments() -> argparse.Namespace:
    parser = run_arguments(__doc__)
    parser.add_argument("--prompts", default="recipe,titles", help=f"names in bench/prompt_sweep.py PROMPTS: {sorted(PROMPTS)}")
    parser.add_argument("--head-users", type=int, default=64, help="train users whose windows the head fits on")
    parser.add_argument("--store", type=Path, default=Path("/tmp/prompt_head_profiles.parquet"),
                        help="profile store (seeded from the run's on first use)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
