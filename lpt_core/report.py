"""The evaluation report: every method's metrics with paired bootstrap intervals, three ways.

report.md for people (tables, best mean per column in bold), report.json for machines (the
registry gate and MLflow read it), metrics.png for a glance (bars with interval whiskers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpt_core.atomic import atomic_path, write_text
from lpt_core.metrics import BootstrapResult, Interval, metric_keys, paired_bootstrap
from lpt_core.retrieval import TIE_RULE

PLOTTED = (("ndcg", "NDCG"), ("recall", "Recall"))


@dataclass
class EvaluationReport:
    table_markdown: str
    numbers: dict  # JSON-able; layout in build_report
    methods: dict[str, dict[str, Interval]]  # numbers["methods"], typed: method -> metric -> interval

    def flat_metrics(self) -> dict[str, float]:
        """{"<method>.<metric>": mean} for trackers that take flat metric names."""
        return {
            f"{method}.{metric}": interval.mean
            for method, metrics in self.methods.items()
            for metric, interval in metrics.items()
        }

    def save(self, folder: Path) -> dict[str, Path]:
        """Write report.md, report.json and metrics.png into `folder`, each atomically."""
        folder = Path(folder)
        paths = {
            "markdown": folder / "report.md",
            "json": folder / "report.json",
            "plot": folder / "metrics.png",
        }
        figure = plot_metrics(self.numbers)
        with atomic_path(paths["plot"]) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
        write_text(paths["json"], json.dumps(self.numbers, indent=2) + "\n")
        write_text(paths["markdown"], self._markdown(paths["plot"].name))
        return paths

    def _markdown(self, plot_name: str) -> str:
        settings = self.numbers["settings"]
        lines = [
            f"# {self.numbers['title']}",
            "",
            f"{self.numbers['n_examples']} evaluation rows from {self.numbers['n_users']} users; "
            f"full-catalogue ranking, history excluded; ties: {settings['tie_rule']}.",
            f"Intervals: {settings['confidence']:.0%} percentile bootstrap over users "
            f"({settings['samples']} paired resamples, seed {settings['seed']}).",
            "",
            self.table_markdown,
            "",
            f"![metrics]({plot_name})",
            "",
        ]
        return "\n".join(lines)


def build_report(
    method_ranks: dict[str, np.ndarray],
    user_ids: Sequence[str],
    ks: Sequence[int],
    samples: int,
    confidence: float,
    seed: int,
    baseline: str | None = "profile",
    title: str = "Evaluation: full-catalogue ranking",
) -> EvaluationReport:
    """Bootstrap every method on the same user resamples and lay the result out as a report.

    numbers = {"title", "n_users", "n_examples", "settings": {...},
               "methods": {method: {metric: {mean, low, high}}},
               "differences": {"A - baseline": {metric: {mean, low, high}}}}
    """
    result = paired_bootstrap(
        method_ranks, user_ids, ks, samples=samples, confidence=confidence, seed=seed, baseline=baseline
    )
    numbers = {
        "title": title,
        "n_users": result.n_users,
        "n_examples": result.n_examples,
        "settings": {
            "ks": list(ks),
            "samples": samples,
            "confidence": confidence,
            "seed": seed,
            "baseline": baseline,
            "tie_rule": TIE_RULE,
            "resampling_unit": "user",
        },
        "methods": _as_numbers(result.methods),
        "differences": _as_numbers(result.differences),
    }
    return EvaluationReport(_tables(result, ks), numbers, result.methods)


def _as_numbers(intervals: dict[str, dict[str, Interval]]) -> dict:
    return {
        name: {key: interval.as_dict() for key, interval in per_metric.items()}
        for name, per_metric in intervals.items()
    }


def _tables(result: BootstrapResult, ks: Sequence[int]) -> str:
    keys = metric_keys(ks)
    header = [
        "| method | " + " | ".join(_label(key) for key in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    best = {key: max(per_metric[key].mean for per_metric in result.methods.values()) for key in keys}
    rows = [
        _row(name, [_cell(per_metric[key], per_metric[key].mean == best[key]) for key in keys])
        for name, per_metric in result.methods.items()
    ]
    tables = ["## Methods", "", *header, *rows]
    if result.differences:
        against = f"minus {result.baseline}" if result.baseline else "pairwise"
        tables += [
            "",
            f"## Differences ({against}; an interval excluding 0 is a clear difference)",
            "",
            *[line.replace("| method |", "| difference |") for line in header],
            *[
                _row(name, [_cell(per_metric[key], bold=False) for key in keys])
                for name, per_metric in result.differences.items()
            ],
        ]
    return "\n".join(tables)


def _row(name: str, cells: list[str]) -> str:
    return f"| {name} | " + " | ".join(cells) + " |"


def _label(key: str) -> str:
    name, k = key.split("@")
    return {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR"}[name] + f"@{k}"


def _cell(interval: Interval, bold: bool) -> str:
    mean = f"**{interval.mean:.4f}**" if bold else f"{interval.mean:.4f}"
    return f"{mean} [{interval.low:.4f}, {interval.high:.4f}]"


def plot_metrics(numbers: dict) -> Figure:
    """Grouped bars, one panel per metric family (NDCG, Recall), one group per K, one bar per
    method, whiskers = the bootstrap interval. Drawn on the Agg canvas: no display needed."""
    methods = numbers["methods"]
    ks = numbers["settings"]["ks"]
    figure = Figure(figsize=(5.0 * len(PLOTTED), 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PLOTTED), squeeze=False)[0]
    width = 0.8 / max(1, len(methods))
    positions = np.arange(len(ks))
    # tab20 rather than the default 10-colour cycle: a report easily has more than ten methods.
    colours = matplotlib.colormaps["tab20"].colors
    for axis, (metric, label) in zip(axes, PLOTTED):
        for j, (name, per_metric) in enumerate(methods.items()):
            values = [per_metric[f"{metric}@{k}"] for k in ks]
            means = np.array([v["mean"] for v in values])
            lows = np.array([v["low"] for v in values])
            highs = np.array([v["high"] for v in values])
            whiskers = np.clip(np.stack([means - lows, highs - means]), 0.0, None)
            offset = (j - (len(methods) - 1) / 2) * width
            axis.bar(
                positions + offset, means, width, yerr=whiskers, capsize=3, label=name,
                color=colours[j % len(colours)],
            )
        axis.set_xticks(positions, [f"{label}@{k}" for k in ks])
        axis.set_ylabel(label)
        axis.set_title(f"{label}@K, {numbers['settings']['confidence']:.0%} intervals")
        axis.grid(axis="y", alpha=0.3)
    # Below the panels: inside one, a dozen methods would cover the bars.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="method", fontsize="small", loc="outside lower center", ncols=min(6, len(labels)))
    figure.suptitle(numbers["title"])
    return figure
