"""Where a finished run's report interval comes from: the per-row differences behind it.

interval_design.py projected the full report's paired half-width from proxy rows whose difference
carries no user effect. This reads a finished run instead (its work folder's tables, base index
and history baselines, as the evaluation_report asset read them), ranks profile_head, a trained
variant's profiles under profile_head's recommender and the popularity row again, checks each
mean against the run's report.json, and splits each "row - profile_head" NDCG@10 difference
into between- and within-user variance: the measured half-width, the half-width the same rows
would have if they were independent, and the test rows that the target half-width would take
at the measured design effect.

--targets N sets evaluation.targets_per_window: each test window's profile is ranked against the
user's next N interactions, one row each (the same stored profiles, nothing generated): how far
more targets per window narrow the interval at no cost in profiles.

    python bench/studies/report_rows.py --work .lpt [--recipe full] [--variant best_of_n_hybrid] [--targets 3] [--json out.json]

About two minutes on two cores (encoding the profiles, fitting profile_head's recommender).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import torch
from interval_design import TARGET_HALF_WIDTH, adjacent_correlation, variance_split

from lpt_core.baselines import evaluate_methods
from lpt_core.config import load_recipe
from lpt_core.evaluation import EvaluationTables, evaluation_context, trained_profiles_under_profile_head
from lpt_core.metrics import per_user_metrics
from lpt_core.profile_quality.intervals import user_bootstrap

METRIC = "ndcg@10"
BASELINE = "profile_head"


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    outputs = args.work / "outputs"
    tables = EvaluationTables(*(pl.read_parquet(outputs / f"{name}.parquet") for name in (
        "user_examples", "cleaned_histories", "item_catalog", "zero_shot_profiles", "sampled_profiles",
        "trained_profiles")))
    recipe = load_recipe(args.recipe)
    if args.targets is not None:
        recipe = recipe.model_copy(update={
            "evaluation": recipe.evaluation.model_copy(update={"targets_per_window": args.targets})
        })
    ctx = evaluation_context(recipe, tables, outputs / "item_index", outputs / "baseline_models")
    ranks = evaluate_methods(ctx, [BASELINE, "popularity"])
    trained_row = f"{args.variant}@{BASELINE}"
    ranks[trained_row] = trained_profiles_under_profile_head(ctx, args.variant, tables.trained_profiles)
    values = {name: per_user_metrics(row, [10])[METRIC] for name, row in ranks.items()}
    report = json.loads((outputs / "evaluation_report" / "report.json").read_text(encoding="utf-8"))
    user_ids = ctx.examples["user_id"].to_numpy()
    windows = ctx.examples["window"].to_numpy()
    result = {
        "run": str(args.work), "targets": recipe.evaluation.targets_per_window, "rows": len(user_ids),
        "users": int(len(np.unique(user_ids))),
        "means": {name: {"recomputed": float(v.mean()), "report": report["methods"][name][METRIC]["mean"]}
                  for name, v in values.items()},
        "differences": {name: _difference(values[name], values[BASELINE], user_ids, windows, args.samples)
                        for name in (trained_row, "popularity")},
    }
    _print(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="the finished run's work folder ($LPT_HOME)")
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--variant", default="best_of_n_hybrid", help="the trained variant whose profiles to rank")
    parser.add_argument("--targets", type=int, default=None,
                        help="evaluation.targets_per_window: each test window against its next N interactions "
                             "(default: the recipe's)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (the report's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _difference(second: np.ndarray, first: np.ndarray, user_ids: np.ndarray, windows: np.ndarray,
                samples: int) -> dict:
    """One "second - first" row pair: its mean, its user-bootstrap half-width (the report's), the
    half-width if every row were its own user, their ratio (the design effect on the width), the
    variance split and the test rows that TARGET_HALF_WIDTH would take at this design effect."""
    by_user = _half_width(second, first, user_ids, samples)
    by_row = _half_width(second, first, np.arange(len(user_ids)).astype(str), samples)
    return {
        "mean": float((second - first).mean()),
        "rows_differing": float((second != first).mean()),
        "half_width": by_user,
        "half_width_independent_rows": by_row,
        "width_ratio": by_user / by_row,
        **variance_split(second - first, user_ids),
        "corr_lag1": adjacent_correlation(second - first, user_ids, windows, 1),
        "rows_for_target": int(np.ceil(len(user_ids) * (by_user / TARGET_HALF_WIDTH) ** 2)),
    }


def _half_width(second: np.ndarray, first: np.ndarray, user_ids: np.ndarray, samples: int) -> float:
    _, differences = user_bootstrap({"first": first, "second": second}, user_ids.tolist(), samples=samples,
                                    seed=0, baseline="first")
    interval = differences["second - first"]
    return (interval.high - interval.low) / 2.0


def _print(result: dict) -> None:
    print(f"# report rows of {result['run']}: {result['rows']} test rows ({result['targets']} target(s) per window), "
          f"{result['users']} users\n")
    print(f"| row | {METRIC} recomputed | in the run's report.json |\n|---|---:|---:|")
    for name, mean in result["means"].items():
        print(f"| {name} | {mean['recomputed']:.4f} | {mean['report']:.4f} |")
    print(f"\n| difference (minus {BASELINE}) | mean | rows differing | half-width | if rows were independent "
          "| ratio | between-user var | within-user var | user share | corr lag 1 | rows for "
          f"+-{TARGET_HALF_WIDTH} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, d in result["differences"].items():
        print(f"| {name} | {d['mean']:+.4f} | {d['rows_differing']:.1%} | {d['half_width']:.4f} "
              f"| {d['half_width_independent_rows']:.4f} | {d['width_ratio']:.2f} | {d['between']:.2e} "
              f"| {d['within']:.2e} | {d['user_share']:.1%} | {d['corr_lag1']:.2f} | {d['rows_for_target']:,} |")


if __name__ == "__main__":
    main()
