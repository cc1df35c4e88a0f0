"""Copy a finished pipeline run's results into bench/results, where the next reader finds them.

    python bench/studies/collect_run.py --work .lpt --name full --header "Command: ... (machine, commit)"

From the work folder of the run ($LPT_HOME): the evaluation report (markdown with the header put
first, plot, JSON with every interval), the profile quality report (markdown with the header,
plot), the training curves of every variant (JSON of the MLflow metric histories of its training
run, and the plot the training asset drew), its training steps as
markdown tables (per RL update the regression diagnostics, per best-of-n iteration the rewards and
SFT loss; the probe curve under each), and the profiles of the first test user's windows before
and after training. Only reads the run's folders.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import polars as pl
from mlflow.tracking import MlflowClient

RESULTS = Path(__file__).resolve().parents[1] / "results"  # bench/results, beside this folder
# Per training step, the columns of its table: (MLflow metric prefix, step name, columns).
STEP_TABLES = (
    ("encoder.", "RL update", ("reward_mean", "loss_before", "loss_after", "pairs_toward_better", "backtracks",
                               "step_scale", "kl", "profile_tokens", "seconds")),
    ("best_of_n.", "best-of-n iteration", ("examples", "examples_kept", "sample_reward", "best_reward", "sft_loss")),
)


def main() -> None:
    args = _arguments()
    outputs = args.work / "outputs"
    report = outputs / "evaluation_report"
    header = args.header.strip() + "\n\n" if args.header else ""
    _write(RESULTS / f"evaluation_{args.name}.md", header + (report / "report.md").read_text(encoding="utf-8"))
    shutil.copyfile(report / "metrics.png", RESULTS / f"evaluation_{args.name}.png")
    shutil.copyfile(report / "report.json", RESULTS / f"evaluation_{args.name}.json")
    quality = outputs / "profile_quality_report"
    if (quality / "report.md").is_file():
        _write(RESULTS / f"profile_quality_{args.name}.md", header + (quality / "report.md").read_text(encoding="utf-8"))
        shutil.copyfile(quality / "quality.png", RESULTS / f"profile_quality_{args.name}.png")
    curves = _training_curves(args.work)
    _write(RESULTS / f"{args.name}_training_curves.json", json.dumps(curves, indent=1))
    if (outputs / "training" / "curves.png").is_file():
        shutil.copyfile(outputs / "training" / "curves.png", RESULTS / f"{args.name}_training_curves.png")
    _write(RESULTS / f"{args.name}_training_steps.md", _steps_markdown(curves, args.name))
    _write(RESULTS / f"{args.name}_profiles_before_after.md", _profiles_markdown(outputs, args.name, args.windows))
    print(f"wrote bench/results/*{args.name}* from {args.work}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the run's work folder ($LPT_HOME)")
    parser.add_argument("--name", required=True, help="recipe name used in the result file names")
    parser.add_argument("--header", default="", help="markdown put above the report: command, machine, commit")
    parser.add_argument("--windows", type=int, default=3, help="test windows of the first user to show")
    return parser.parse_args()


def _training_curves(work: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per variant: every metric history of its latest training run in the run's MLflow store."""
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow' / 'mlflow.db'}")
    curves = {}
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id], "attributes.run_name LIKE 'training/%'",
                                  order_by=["attributes.start_time DESC"])
        for run in runs:
            variant = run.info.run_name.removeprefix("training/")
            if variant in curves:
                continue  # an older run of the same variant
            curves[variant] = {
                key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                for key in sorted(run.data.metrics)
            }
    return curves


def _steps_markdown(curves: dict, name: str) -> str:
    lines = [f"# Training steps of the `{name}` run", ""]
    for variant, series in curves.items():
        for prefix, step_name, columns in STEP_TABLES:
            lines += _step_table(series, prefix, step_name, [c for c in columns if prefix + c in series], variant)
    return "\n".join(lines)


def _step_table(series: dict, prefix: str, step_name: str, columns: list[str], variant: str) -> list[str]:
    """One variant's table of `prefix` steps, and the probe curve over them (before the first and
    after the steps it was measured at)."""
    if not columns:
        return []
    by_step = {c: dict(series[prefix + c]) for c in columns}
    steps = sorted({step for values in by_step.values() for step in values})
    lines = [f"## {variant}: {step_name}s (by MLflow step, 0 = the first)", "",
             f"| {step_name} | " + " | ".join(columns) + " |",
             "|---:|" + "---:|" * len(columns)]
    lines += [f"| {step} | " + " | ".join(_number(by_step[c].get(step)) for c in columns) + " |" for step in steps]
    start, probe = series.get(prefix + "probe_reward_start", []), series.get(prefix + "probe_reward", [])
    if probe:
        points = [f"before the first: {value:.4f}" for _, value in start[:1]]
        points += [f"after step {step}: {value:.4f}" for step, value in probe]
        lines += ["", "Probe (greedy reward of the fixed probe examples): " + ", ".join(points)]
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _profiles_markdown(outputs: Path, name: str, windows: int) -> str:
    examples = pl.read_parquet(outputs / "user_examples.parquet").filter(pl.col("split") == "test")
    titles = dict(pl.read_parquet(outputs / "item_catalog.parquet").select("item_id", "title").iter_rows())
    first_user = examples["user_id"][0]
    rows = examples.filter(pl.col("user_id") == first_user).head(windows)
    keys = ["user_id", "window"] if "window" in rows.columns else ["user_id"]
    zero_shot = pl.read_parquet(outputs / "zero_shot_profiles.parquet")
    trained = pl.read_parquet(outputs / "trained_profiles.parquet")
    lines = [f"# Profiles of one test user before and after training (`{name}` recipe)", "",
             "Greedy decoding; zero-shot = the base generator; each trained variant = its trained generator.", ""]
    for row in rows.iter_rows(named=True):
        match = [pl.col(k) == row[k] for k in keys]
        lines += [f"### user {row['user_id']}" + (f", window {row['window']}" if "window" in row else ""), "",
                  "History: " + "; ".join(titles.get(i, i) for i in row["history_item_ids"]), "",
                  f"Next item: {titles.get(row['target_item_id'], row['target_item_id'])}", "",
                  f"**Zero-shot:** {_one(zero_shot.filter(*match))}", ""]
        for variant in sorted(trained["variant"].unique().to_list()):
            lines += [f"**{variant}:** {_one(trained.filter(*match, pl.col('variant') == variant))}", ""]
    return "\n".join(lines)


def _one(profiles: pl.DataFrame) -> str:
    return profiles["profile"][0] if profiles.height else "(no profile)"


def _write(path: Path, text: str) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
