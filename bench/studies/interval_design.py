"""How does the report's paired interval narrow with more test users U and windows per user W?

The full recipe's report resamples users (lpt_core.metrics): its interval of "trained -
zero-shot" NDCG@10 is about +-0.0053 on 95 test users x up to 10 windows, and issue 28 asks for
+-0.0025. Every val/test row costs two LLM profiles (zero-shot and trained), so the question is
which (U, W) buys that precision for the fewest profiles. This study answers it without
generating anything: on the recipe's own cleaned data and split (every user given up to 20
windows, no training involved), two closely related query rows per example are ranked against the
recipe's catalogue, and the paired user-bootstrap half-width of their per-row NDCG@10 difference
(lpt_core.profile_quality.intervals.user_bootstrap) is measured for many random draws of U users,
keeping each user's first W windows (or W windows spread over the first ten). Candidate splits
(train_frac, val_share, split.eval_windows_per_user) are then costed in profiles and projected.

The query rows are embeddings of the history, not generated profiles, so that thousands of rows
cost no encoder time (the catalogue's item texts are embedded once by the recipe's frozen
encoder): `all` is the normalised mean of the 10 history items' embeddings, `recent` of the last
8, `liked` of those rated 4 or more (all 10 where none is). A pair (all vs recent, all vs liked)
is two writers describing the same window's history with different emphasis, its difference
varying row by row with the window's target, as two profile writers' rows do. Each pair is ranked
under plain cosine and under the recipe's hybrid item head (fitted as the report's
history_text_head row is: on the first evaluation.head_train_users train users' rows, stopped
early on the val rows, here with the `all` queries), which ranks by popularity as much as by text,
as profile_head does. What transfers to the report is each design's half-width relative to the
current design's, not the proxies' own half-widths. The users the head fits on are left out of
every draw.

--text-check also ranks the pipeline's history_text row (history texts embedded whole, plain
cosine) against the same text of the last 8 items, on the current test users only (encoding is
slow on a CPU): its between/within-user variance split is set beside the proxies' on those rows.

    python bench/studies/interval_design.py --recipe full --json bench/results/interval_design.json [--text-check]

Prints markdown tables; minutes on two cores (the bootstrap draws, and --text-check's encoding).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lpt_core import text
from lpt_core.catalog_index import CatalogIndex, base_catalog_index
from lpt_core.config import Recipe, SplitConfig, load_recipe
from lpt_core.data.preparation import prepare_data
from lpt_core.data.splitting import split_users, train_item_counts
from lpt_core.metrics import per_user_metrics
from lpt_core.profile_quality.intervals import user_bootstrap
from lpt_core.profiles import first_train_users
from lpt_core.retrieval import ItemIndex
from lpt_core.training.item_head import HeadExamples, fit_item_head

# The full report's measured half-width (best_of_n_hybrid - profile_head, NDCG@10,
# bench/results/evaluation_full.md) and the target.
REPORT_HALF_WIDTH = 0.0053
TARGET_HALF_WIDTH = 0.0025
PROFILES_PER_SECOND = 0.7  # float32 on 2 cores (configs/full.yaml's header)
USER_COUNTS = (95, 190, 285, 380)
# Up to 20 windows: the study's split gives every user this many (where they have the
# interactions); the head still fits on the recipe's own windows.
WINDOW_COUNTS = (1, 2, 3, 4, 10, 15, 20)
# W windows spread over the ten (stride 9 interactions: consecutive windows share 7 of 10 items,
# these share at most 1): what an evaluation stride of 9 would give.
SPREAD = {2: (0, 3), 3: (0, 3, 6), 4: (0, 3, 6, 9)}
RECENT_ITEMS = 8
LIKED_RATING = 4.0
PAIRS = (("all", "recent"), ("all", "liked"))
# Candidate splits beside the recipe's own: (train_frac, val_share, eval_windows_per_user). Train
# users must stay at least evaluation.head_train_users + training.rl_users (256 + 256) for the head
# and RL to keep their users.
CANDIDATES = (
    (0.8, 0.5, 4),
    (0.8, 0.5, 20),
    (0.55, 0.2, 4),
    (0.6, 0.25, 10),
    (0.55, 0.12, 10),
    (0.55, 0.12, 12),
    (0.55, 0.12, 15),
    (0.55, 0.05, 10),
    (0.55, 0.05, 12),
    (0.55, 0.05, 15),
)


@dataclass(frozen=True)
class Proxy:
    """Per-row NDCG@10 of two query rows under one ranker, with each row's user and window."""

    name: str
    first: np.ndarray
    second: np.ndarray
    user_ids: np.ndarray
    windows: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.second - self.first


def main() -> None:
    args = _arguments()
    started = time.perf_counter()
    recipe = load_recipe(args.recipe)
    windows = recipe.split.windows_per_user
    cleaned, data = prepare_data(recipe.model_copy(
        update={"split": recipe.split.model_copy(update={"windows_per_user": max(WINDOW_COUNTS)})}
    ))
    examples, catalog = data.examples, data.catalog
    built = base_catalog_index(catalog, recipe.models)
    base = built.index
    queries = _mean_queries(examples, base)
    head_index = _history_head(recipe, examples, cleaned.interactions, base, queries["all"])

    head_users = set(first_train_users(examples, recipe.evaluation.head_train_users)["user_id"].to_list())
    pool = ~examples["user_id"].is_in(list(head_users)).to_numpy()
    rows = examples.filter(pl.Series(pool))
    proxies = [
        _proxy(f"{ranker_name}: {a} vs {b}", index, queries[a][pool], queries[b][pool], rows)
        for ranker_name, index in (("cosine", base), ("head", head_index))
        for a, b in PAIRS
    ]
    rng = np.random.default_rng(args.seed)
    designs = _designs()
    grid = {p.name: _half_widths(p, designs, args.repeats, args.samples, rng) for p in proxies}
    current = ("consecutive", 95, windows)
    reference = {name: widths[current] for name, widths in grid.items()}
    test_users = examples.filter(pl.col("split") == "test")["user_id"].unique().to_list()
    result = {
        "recipe": recipe.name,
        "pool_users": int(rows["user_id"].n_unique()),
        "pool_rows": rows.height,
        "proxies": {p.name: _summary(p, test_users, windows, args.samples) for p in proxies},
        "designs": _design_rows(grid, reference, _rows_per_user(rows, designs), current),
        "candidates": _candidates(recipe, cleaned.interactions, proxies, reference, args, rng),
    }
    if args.text_check:
        result["text_check"] = _text_check(examples, catalog, built, test_users, windows, proxies)
    result["seconds"] = time.perf_counter() - started
    _print(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--repeats", type=int, default=20, help="random user draws per design")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (the report's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--text-check", action="store_true")
    return parser.parse_args()


def _mean_queries(examples: pl.DataFrame, index: ItemIndex) -> dict[str, np.ndarray]:
    """The three query rows per example: mean history embedding of all, recent and liked items."""
    vectors = index.vectors
    histories = [vectors[index.positions(items)] for items in examples["history_item_ids"].to_list()]
    ratings = [np.asarray(r, dtype=np.float64) for r in examples["history_ratings"].to_list()]

    def normalised(rows: list[np.ndarray]) -> np.ndarray:
        means = np.stack([r.mean(axis=0) for r in rows])
        return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)

    liked = [h[r >= LIKED_RATING] if (r >= LIKED_RATING).any() else h for h, r in zip(histories, ratings, strict=True)]
    return {
        "all": normalised(histories),
        "recent": normalised([h[-RECENT_ITEMS:] for h in histories]),
        "liked": normalised(liked),
    }


def _history_head(
    recipe: Recipe, examples: pl.DataFrame, interactions: pl.DataFrame, base: ItemIndex, queries: np.ndarray
) -> ItemIndex:
    """The recipe's item head fitted as history_text_head's is (its train and val rows, the
    recipe's windows of them, its settings and seed), on the `all` query rows."""
    ev = recipe.evaluation
    head_users = first_train_users(examples, ev.head_train_users)["user_id"].unique().implode()
    recipe_window = pl.col("window") < recipe.split.windows_per_user
    is_train = ((pl.col("split") == "train") & pl.col("user_id").is_in(head_users)).alias("head_train")
    flags = examples.select(is_train & recipe_window, ((pl.col("split") == "val") & recipe_window).alias("head_val"))

    def rows_of(mask: pl.Series) -> HeadExamples:
        part = examples.filter(mask)
        return HeadExamples(
            queries[mask.to_numpy()],
            base.positions(part["target_item_id"].to_list()),
            [base.positions(h) for h in part["history_item_ids"].to_list()],
        )

    counts = train_item_counts(interactions, examples)
    item_counts = np.array([counts.get(i, 0) for i in base.item_ids.tolist()])
    fitted = fit_item_head(
        base.vectors, rows_of(flags["head_train"]), rows_of(flags["head_val"]), ev.head, ev.seed,
        item_counts=item_counts,
    )
    return fitted.head.index(base.item_ids.tolist(), base.vectors)


def _ndcg(index: ItemIndex, queries: np.ndarray, rows: pl.DataFrame) -> np.ndarray:
    ranks = index.target_ranks(queries, rows["target_item_id"].to_list(), rows["history_item_ids"].to_list())
    return per_user_metrics(ranks, [10])["ndcg@10"]


def _proxy(name: str, index: ItemIndex, first: np.ndarray, second: np.ndarray, rows: pl.DataFrame) -> Proxy:
    return Proxy(
        name, _ndcg(index, first, rows), _ndcg(index, second, rows),
        rows["user_id"].to_numpy(), rows["window"].to_numpy(),
    )


def _designs() -> list[tuple[str, int, int]]:
    consecutive = [("consecutive", u, w) for u in USER_COUNTS for w in WINDOW_COUNTS]
    return consecutive + [("spread", u, w) for u in USER_COUNTS for w in SPREAD]


def _window_mask(windows: np.ndarray, layout: str, count: int) -> np.ndarray:
    if layout == "consecutive":
        return windows < count
    return np.isin(windows, SPREAD[count])


def _half_width(proxy: Proxy, rows: np.ndarray, samples: int, seed: int) -> float:
    _, differences = user_bootstrap(
        {"first": proxy.first[rows], "second": proxy.second[rows]}, proxy.user_ids[rows].tolist(),
        samples=samples, seed=seed, baseline="first",
    )
    interval = differences["second - first"]
    return (interval.high - interval.low) / 2.0


def _mean_half_width(
    proxy: Proxy, layout: str, users: int, windows: int, repeats: int, samples: int, rng: np.random.Generator
) -> float:
    """Mean half-width over `repeats` draws of `users` users, each keeping its design's windows."""
    pool = np.unique(proxy.user_ids)
    kept = _window_mask(proxy.windows, layout, windows)
    widths = []
    for repeat in range(repeats):
        drawn = rng.choice(pool, size=users, replace=False)
        widths.append(_half_width(proxy, kept & np.isin(proxy.user_ids, drawn), samples, seed=repeat))
    return float(np.mean(widths))


def _half_widths(
    proxy: Proxy, designs: list[tuple[str, int, int]], repeats: int, samples: int, rng: np.random.Generator
) -> dict[tuple[str, int, int], float]:
    return {design: _mean_half_width(proxy, *design, repeats, samples, rng) for design in designs}


def _rows_per_user(rows: pl.DataFrame, designs: list[tuple[str, int, int]]) -> dict[tuple[str, int], float]:
    windows, users = rows["window"].to_numpy(), rows["user_id"].n_unique()
    return {(layout, w): float(_window_mask(windows, layout, w).sum() / users) for layout, _, w in designs}


def _design_rows(
    grid: dict[str, dict[tuple[str, int, int], float]], reference: dict[str, float],
    rows_per_user: dict[tuple[str, int], float], current: tuple[str, int, int],
) -> list[dict]:
    """Each design's half-widths and their ratios to the current design's, beside the ratio
    that independent rows would give (the square root of the inverse ratio of row counts)."""
    current_rows = current[1] * rows_per_user[current[0], current[2]]
    out = []
    for layout, users, count in next(iter(grid.values())):
        rows = users * rows_per_user[layout, count]
        out.append({
            "layout": layout, "users": users, "windows": count, "rows_per_user": rows_per_user[layout, count],
            "half_width": {name: widths[layout, users, count] for name, widths in grid.items()},
            "ratio": {name: widths[layout, users, count] / reference[name] for name, widths in grid.items()},
            "independent_rows_ratio": float(np.sqrt(current_rows / rows)),
        })
    return out


def variance_split(difference: np.ndarray, user_ids: np.ndarray) -> dict[str, float]:
    """One-way random-effects split of the per-row difference (unbalanced ANOVA): between-user
    and within-user variance, and the correlation of a user's two adjacent windows."""
    users, user_of_row, sizes = np.unique(user_ids, return_inverse=True, return_counts=True)
    means = np.bincount(user_of_row, weights=difference) / sizes
    grand = difference.mean()
    within = float(((difference - means[user_of_row]) ** 2).sum() / (len(difference) - len(users)))
    between_ms = float((sizes * (means - grand) ** 2).sum() / (len(users) - 1))
    n0 = (len(difference) - (sizes**2).sum() / len(difference)) / (len(users) - 1)
    between = max(0.0, (between_ms - within) / n0)
    return {
        "between": between,
        "within": within,
        "user_share": between / (between + within) if between + within > 0 else float("nan"),
    }


def adjacent_correlation(difference: np.ndarray, user_ids: np.ndarray, windows: np.ndarray, lag: int) -> float:
    """Correlation of the difference between windows w and w + lag of one user."""
    frame = pl.DataFrame({"user": user_ids, "window": windows, "d": difference})
    pairs = frame.join(frame.with_columns(pl.col("window") - lag), on=["user", "window"], suffix="_later")
    return float(np.corrcoef(pairs["d"].to_numpy(), pairs["d_later"].to_numpy())[0, 1])


def _summary(proxy: Proxy, test_users: list[str], windows: int, samples: int) -> dict:
    """A proxy's means, variance split, window correlations and its half-width on the current
    test users (the recipe's `windows` windows)."""
    difference = proxy.difference
    on_test = np.isin(proxy.user_ids, test_users) & (proxy.windows < windows)
    return {
        "ndcg_first": float(proxy.first.mean()),
        "ndcg_second": float(proxy.second.mean()),
        "rows_differing": float((difference != 0).mean()),
        **variance_split(difference, proxy.user_ids),
        **{f"corr_lag{lag}": adjacent_correlation(difference, proxy.user_ids, proxy.windows, lag) for lag in (1, 3)},
        "current_test_users_half_width": _half_width(proxy, on_test, samples, seed=0),
    }


def _candidates(
    recipe: Recipe, interactions: pl.DataFrame, proxies: list[Proxy], reference: dict[str, float],
    args: argparse.Namespace, rng: np.random.Generator,
) -> list[dict]:
    """Each candidate split's users, rows and profiles (the recipe's split machinery; the first
    candidate is the recipe's own split), and its projected half-width: the report's, times the
    worst proxy's ratio of half-widths at its test users and windows to the current design's."""
    head_users, rl_users = recipe.evaluation.head_train_users, recipe.training.rl_users
    out = []
    for train_frac, val_share, eval_windows in ((recipe.split.train_frac, recipe.split.val_share, None), *CANDIDATES):
        cfg = SplitConfig.model_validate({
            **recipe.split.model_dump(),
            "train_frac": train_frac, "val_share": val_share, "eval_windows_per_user": eval_windows,
        })
        split = split_users(interactions, cfg)
        stats = split.stats()["splits"]
        head_rows = first_train_users(split.examples, head_users).height
        profiles = 2 * (stats["val"]["examples"] + stats["test"]["examples"]) + head_rows
        ratios = {
            p.name: _mean_half_width(
                p, "consecutive", stats["test"]["users"], cfg.evaluation_windows, args.repeats, args.samples, rng
            ) / reference[p.name]
            for p in proxies
        }
        added = profiles - (out[0]["profiles"] if out else profiles)
        current_test_rows = out[0]["test_rows"] if out else stats["test"]["examples"]
        out.append({
            "train_frac": train_frac, "val_share": val_share, "eval_windows_per_user": eval_windows,
            "train_users": stats["train"]["users"], "enough_train_users": stats["train"]["users"] >= head_users + rl_users,
            "val_users": stats["val"]["users"], "val_rows": stats["val"]["examples"],
            "test_users": stats["test"]["users"], "test_rows": stats["test"]["examples"],
            "catalogue_items": len(split.catalog_item_ids), "head_train_rows": head_rows,
            "profiles": profiles, "added_profiles": added, "added_hours": added / PROFILES_PER_SECOND / 3600,
            "ratio": ratios, "worst_ratio": max(ratios.values()),
            "independent_rows_ratio": float(np.sqrt(current_test_rows / stats["test"]["examples"])),
            "projected_half_width": REPORT_HALF_WIDTH * max(ratios.values()),
        })
    return out


def _text_check(
    examples: pl.DataFrame, catalog: pl.DataFrame, built: CatalogIndex, test_users: list[str], windows: int,
    proxies: list[Proxy],
) -> dict:
    """history_text (whole history text embedded) vs the same text of the last 8 items, cosine,
    on the current test users' rows (the recipe's `windows`): its variance split beside the
    proxies' on the same rows."""
    rows = examples.filter(pl.col("user_id").is_in(test_users) & (pl.col("window") < windows))
    recent = rows.with_columns(pl.col(c).list.tail(RECENT_ITEMS) for c in ("history_item_ids", "history_ratings",
                                                                             "history_reviews"))
    started = time.perf_counter()
    first = _ndcg(built.index, built.encoder.encode(text.history_texts(rows, catalog)), rows)
    second = _ndcg(built.index, built.encoder.encode(text.history_texts(recent, catalog)), rows)
    user_ids = rows["user_id"].to_numpy()
    checked = {"history_text: all vs last 8": variance_split(second - first, user_ids)}
    for proxy in proxies:
        on_test = np.isin(proxy.user_ids, test_users) & (proxy.windows < windows)
        checked[proxy.name] = variance_split(proxy.difference[on_test], proxy.user_ids[on_test])
    return {"rows": rows.height, "encode_seconds": time.perf_counter() - started, "variance_split": checked}


def _print(result: dict) -> None:
    names = list(result["proxies"])
    print(f"# interval design ({result['recipe']}): {result['pool_users']} users, {result['pool_rows']} rows\n")
    print("| proxy | NDCG@10 first | second | rows differing | between-user var | within-user var | user share "
          "| corr lag 1 | corr lag 3 | half-width, current test users |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in result["proxies"].items():
        print(f"| {name} | {s['ndcg_first']:.4f} | {s['ndcg_second']:.4f} | {s['rows_differing']:.1%} "
              f"| {s['between']:.2e} | {s['within']:.2e} | {s['user_share']:.1%} | {s['corr_lag1']:.2f} "
              f"| {s['corr_lag3']:.2f} | {s['current_test_users_half_width']:.4f} |")
    print("\n| windows | users | rows/user | " + " | ".join(f"ratio {n}" for n in names)
          + " | independent rows | worst ratio | projected half-width |")
    print("|---|---:|---:|" + "---:|" * (len(names) + 3))
    for d in result["designs"]:
        worst = max(d["ratio"].values())
        print(f"| {d['layout']} {d['windows']} | {d['users']} | {d['rows_per_user']:.2f} | "
              + " | ".join(f"{d['ratio'][n]:.3f}" for n in names)
              + f" | {d['independent_rows_ratio']:.3f} | {worst:.3f} | {REPORT_HALF_WIDTH * worst:.4f} |")
    print("\n| train_frac | val_share | eval windows | train / val / test users | val / test rows | items "
          "| profiles | added | added hours | independent rows | worst ratio | projected half-width |")
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in result["candidates"]:
        print(f"| {c['train_frac']} | {c['val_share']} | {c['eval_windows_per_user']} "
              f"| {c['train_users']} / {c['val_users']} / {c['test_users']} | {c['val_rows']} / {c['test_rows']} "
              f"| {c['catalogue_items']} | {c['profiles']} | {c['added_profiles']:+d} | {c['added_hours']:+.2f} "
              f"| {c['independent_rows_ratio']:.3f} | {c['worst_ratio']:.3f} | {c['projected_half_width']:.4f} |")
    if "text_check" in result:
        print(f"\ntext check ({result['text_check']['rows']} rows, {result['text_check']['encode_seconds']:.0f} s):")
        for name, s in result["text_check"]["variance_split"].items():
            print(f"- {name}: between {s['between']:.2e}, within {s['within']:.2e}, user share {s['user_share']:.1%}")
    print(f"\n{result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
