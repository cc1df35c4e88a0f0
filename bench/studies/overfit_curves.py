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
from rl_sweep import RESULTS

from lpt_core.profile_quality.intervals import user_bootstrap

# (result file, arm): label. overfit_bfloat16's own rebel arm is session 15's 10 updates before the
# line-search fix, superseded by overfit_bfloat16_rebel.
RUNS = {
    ("overfit_bfloat16_rebel", "rebel"): "REBEL, bf16 policy",
    ("overfit_bfloat16_rebel_seed1", "rebel"): "REBEL, bf16 policy, seed 1 (20 updates)",
    ("overfit_float32_rebel", "rebel"): "REBEL, float32 policy (the CPU product)",
    ("overfit_float32_rebel_targets4", "rebel"): "REBEL, float32, reward over 4 targets",
    ("overfit_bfloat16", "best_of_n"): "best-of-n, bf16 (x = iteration)",
}
GROUPS = (("trained", "16 trained users"), ("unseen", "59 unseen users"))


def main() -> None:
    args = _arguments()
    matplotlib.rcParams["font.size"] = 9
    figure = Figure(figsize=(11, 3.4 * len(GROUPS)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(GROUPS), 1, sharex=False)
    for name in args.runs.split(","):
        run, arm = name.split(":")
        result = json.loads((RESULTS / f"{run}.json").read_text(encoding="utf-8"))[arm]
        for ax, (group, _) in zip(axes, GROUPS):
            steps, means, lows, highs = _changes(result["steps"], result["rewards"][group])
            line = ax.plot(steps, means, marker="o", label=RUNS.get((run, arm), name))[0]
            ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.15)
    for ax, (_, title) in zip(axes, GROUPS):
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{title}: greedy reward change from the start, 95% paired interval")
        ax.set_xlabel("REBEL update (best-of-n: iteration)")
        ax.set_ylabel("change in reward")
        ax.legend(loc="upper left", fontsize=8)
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
