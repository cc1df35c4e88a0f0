"""The overfit runs' probe curves in one figure: per run, the change in greedy reward of the trained
users and of the unseen ones after each probe, with the paired 95% user-bootstrap interval that
the run's markdown table gives (lpt_core.profile_quality.intervals.user_bootstrap, 2,000 resamples).

    python bench/studies/overfit_curves.py [--runs overfit_float32_rebel:rebel,overfit_bfloat16:best_of_n,...]

Reads bench/results/<run>.json (written by overfit.py), writes bench/results/overfit_curves.png.
"""

from __future__ import annotations

import argparse
import json

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rl_sweep import RESULTS

from lpt_core.profile_quality.intervals import user_bootstrap

# (result file, arm): label. overfit_bfloat16's own rebel arm is session 15's 10 updates before the
# line-search fix, superseded by overfit_bfloat16_rebel.
RUNS = {
    ("overfit_bfloat16_rebel", "rebel"): "bf16 policy",
    ("overfit_bfloat16_rebel_seed1", "rebel"): "bf16 policy, seed 1 (20 updates)",
    ("overfit_float32_rebel", "rebel"): "float32 policy (the CPU product)",
    ("overfit_float32_rebel_targets4", "rebel"): "float32, reward over 4 targets",
    ("overfit_float32_rebel_beta0", "rebel"): "float32, no KL shaping (beta 0)",
    ("overfit_float32_rebel_eta10_lr1e-3", "rebel"): "float32, beta 0, a 10x move (eta 10, lr 1e-3)",
    ("overfit_bfloat16", "best_of_n"): "bf16, the recipe's SFT (1 epoch, lr 2e-4)",
    ("overfit_float32_best_of_n_fit", "best_of_n"): "float32, SFT fitted (8 epochs, lr 1e-3)",
    ("overfit_float32_best_of_n_fit_seed1", "best_of_n"): "float32, SFT fitted, seed 1",
}
GROUPS = (("trained", "16 trained users"), ("unseen", "59 unseen users"))
# One column per algorithm: REBEL's x is its update, best-of-n's its iteration.
ARMS = (("rebel", "REBEL", "update"), ("best_of_n", "best-of-n", "iteration"))


def main() -> None:
    args = _arguments()
    matplotlib.rcParams["font.size"] = 9
    figure = Figure(figsize=(13, 3.6 * len(GROUPS)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(GROUPS), len(ARMS), sharey="row", gridspec_kw={"width_ratios": [3, 2]})
    columns = {arm: column for column, (arm, _, _) in enumerate(ARMS)}
    for name in args.runs.split(","):
        run, arm = name.split(":")
        path = RESULTS / f"{run}.json"
        if not path.exists():
            print(f"skipped {run}: no {path.name}")
            continue
        result = json.loads(path.read_text(encoding="utf-8"))[arm]
        for row, (group, _) in enumerate(GROUPS):
            ax = axes[row][columns[arm]]
            steps, means, lows, highs = _changes(result["steps"], result["rewards"][group])
            line = ax.plot(steps, means, marker="o", label=RUNS.get((run, arm), name))[0]
            ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.15)
    for row, (_, title) in enumerate(GROUPS):
        for column, (_, algorithm, step) in enumerate(ARMS):
            ax = axes[row][column]
            ax.axhline(0.0, color="grey", linewidth=0.8)
            ax.set_title(f"{algorithm}, {title}")
            ax.set_xlabel(step)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("change in reward")
            ax.legend(loc="upper left", fontsize=8)
    figure.suptitle("Greedy reward change from the start (shaded: 95% paired interval)")
    figure.tight_layout()
    figure.savefig(RESULTS / "overfit_curves.png", dpi=110)
    print(f"wrote {RESULTS / 'overfit_curves.png'}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=",".join(f"{run}:{arm}" for run, arm in RUNS),
                        help="result:arm pairs to draw (result files without .json)")
    return parser.parse_args()


def _changes(steps: list[int], rewards: list[list[float]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per probe: the mean change from the first probe and its paired interval."""
    start = np.asarray(rewards[0])
    users = [str(i) for i in range(len(start))]
    means, lows, highs = [], [], []
    for probe in rewards:
        _, differences = user_bootstrap({"start": start, "after": np.asarray(probe)}, users, samples=2000,
                                        seed=0, baseline="start")
        interval = differences["after - start"]
        means.append(interval.mean)
        lows.append(interval.low)
        highs.append(interval.high)
    return steps, means, lows, highs


if __name__ == "__main__":
    main()
