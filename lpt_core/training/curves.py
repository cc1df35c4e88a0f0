"""Training curves of every variant in one figure: what a reader checks first after a run.

The series are the per-step metrics training reports (lpt_core.training.alternation's callbacks,
logged to MLflow as "<phase>.<name>"): RL reward, KL to the base model and REBEL loss per update,
contrastive loss per step. Noisy per-step values get a trailing moving average drawn over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lpt_core.atomic import atomic_path

# metric key -> panel title, in panel order.
CURVES = {
    "encoder.probe_reward": "RL probe: greedy reward on fixed train examples",
    "encoder.reward_mean": "RL reward (mean over the rollout)",
    "encoder.loss_after": "REBEL loss on the update's own batch",
    "encoder.pairs_toward_better": "pairs moved toward the better profile",
    "encoder.kl": "KL to the base model (per sequence)",
    "encoder.profile_tokens": "profile length (tokens)",
    "decoder.loss": "contrastive loss (InfoNCE)",
    "head.val_ndcg@10": "item-side head: val NDCG@10 by epoch",
    "best_of_n.best_reward": "best-of-n: reward of the kept profiles",
    "best_of_n.probe_reward": "best-of-n probe: greedy reward on fixed train examples",
}
# A panel's reference series, drawn dashed in the variant's colour without smoothing: the loss
# before the update's steps, the probe's reward before any update.
COMPANIONS = {
    "encoder.loss_after": "encoder.loss_before",
    "encoder.probe_reward": "encoder.probe_reward_start",
    "best_of_n.best_reward": "best_of_n.sample_reward",
    "best_of_n.probe_reward": "best_of_n.probe_reward_start",
}
COMPANION_LABELS = {
    "encoder.loss_after": "dashed: before the update",
    "encoder.probe_reward": "dashed: before RL",
    "best_of_n.best_reward": "dashed: mean of all samples",
    "best_of_n.probe_reward": "dashed: before best-of-n",
}
# Every series the figure reads.
CURVE_KEYS = (*CURVES, *COMPANIONS.values())
Series = Sequence[tuple[int, float]]  # (step, value)


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (the first points average what exists so far)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_training_curves(histories: Mapping[str, Mapping[str, Series]], window: int = 5) -> Figure:
    """One panel per metric in CURVES that any variant logged, one line per variant.

    `histories[variant][metric]` is that variant's (step, value) series; an empty mapping gives
    an error rather than a blank figure."""
    shown = [key for key in CURVES if any(series.get(key) for series in histories.values())]
    if not shown:
        raise ValueError(f"no training curves to plot: none of {list(CURVES)} was logged")
    columns = min(3, len(shown))
    rows = -(-len(shown) // columns)
    figure = Figure(figsize=(4.6 * columns, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    colours = matplotlib.colormaps["tab10"].colors
    for axis, key in zip(axes, shown):
        for j, (variant, series) in enumerate(histories.items()):
            points = sorted(series.get(key, ()))
            if not points:
                continue
            steps = [step for step, _ in points]
            values = [value for _, value in points]
            colour = colours[j % len(colours)]
            axis.plot(steps, values, color=colour, alpha=0.3, linewidth=1)
            axis.plot(steps, moving_average(values, window), color=colour, label=variant)
            _draw_companion(axis, series.get(COMPANIONS.get(key, ""), ()), steps, colour)
        title = CURVES[key] + (f"\n({COMPANION_LABELS[key]})" if key in COMPANION_LABELS else "")
        axis.set_title(title, fontsize="medium")
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes[len(shown):]:
        axis.set_visible(False)
    # A variant may appear in some panels only (CL only logs no RL curves): one entry per variant.
    legend = {}
    for axis in axes[: len(shown)]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    figure.legend(handles, labels, title=f"variant (line: mean of last {window})", fontsize="small",
                  loc="outside lower center", ncols=min(5, max(1, len(labels))))
    return figure


def _draw_companion(axis, companion: Series, steps: list[int], colour) -> None:
    """A reference series dashed; a single value (the probe before RL) as a level across the panel."""
    points = sorted(companion)
    if not points:
        return
    if len(points) == 1:
        axis.hlines(points[0][1], min(steps), max(steps), colors=[colour], linestyles="dashed", linewidth=1)
    else:
        axis.plot([s for s, _ in points], [v for _, v in points], color=colour, linestyle="dashed", linewidth=1)


def save_training_curves(histories: Mapping[str, Mapping[str, Series]], path: Path, window: int = 5) -> Path:
    """plot_training_curves written as a PNG, atomically."""
    figure = plot_training_curves(histories, window)
    with atomic_path(Path(path)) as partial:
        figure.savefig(partial, format="png", dpi=110)
    return Path(path)
