"""Fair tuning: a small, documented hyperparameter search on the validation users per baseline.

The text methods get no per-method tuning beyond the recipe, so the history baselines must not be
handicapped by untuned defaults either, nor flattered by a search on test users. Protocol:
- Data: fit on train users' sequences; select on the validation users' N-item histories, ranked
  exactly as at evaluation (history excluded, shared tie rule). Test users are never seen.
- Criterion: one validation metric (default "ndcg@10"); a tie keeps the earlier trial.
- Budget, SASRec: at most `trials` settings drawn without replacement from the grid (seeded; the
  whole grid if it is smaller), each trained for at most `base.epochs` epochs and stopped early
  after `base.patience` epochs without improvement; the best epoch's weights are kept. An optional
  wall-clock budget stops STARTING new trials once spent (the first trial always runs), for shared
  machines; leave it None for a run that must be reproducible.
- Budget, item-kNN: its whole grid (k x similarity); each fit takes seconds.
The chosen settings are returned (and stored by the caller in the recipe's baselines section and
MLflow), with every trial's settings, metric and time, so the search itself is on record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from lpt_core.metrics import metric_cutoff
from lpt_core.recommenders import save_baseline_models
from lpt_core.recommenders.item_knn import ItemKNN, Similarity
from lpt_core.recommenders.sasrec import SASRecConfig, fit_sasrec
from lpt_core.recommenders.scoring import HistoryScorer, validation_metric
from lpt_core.recommenders.sequences import BaselineData, baseline_data


@dataclass(frozen=True)
class Trial:
    """One setting tried: its validation metric, fitting time and fitting details."""

    settings: dict
    metric: float
    seconds: float
    details: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    """The best model of a search, its settings, and every trial in the order run."""

    model: HistoryScorer
    settings: dict
    metric_name: str
    trials: list[Trial]

    @property
    def metric(self) -> float:
        return max(trial.metric for trial in self.trials)

    def summary(self) -> dict:
        """JSON-able record: chosen settings, best metric, and each trial."""
        return {
            "chosen": self.settings,
            f"val_{self.metric_name}": self.metric,
            "trials": [dataclasses.asdict(trial) for trial in self.trials],
        }


def grid_points(grid: Mapping[str, Sequence], trials: int | None, seed: int) -> list[dict]:
    """Settings from the grid's product: all of them in grid order, or `trials` of them drawn
    without replacement (seeded) when the grid is larger."""
    empty = [name for name, values in grid.items() if len(values) == 0]
    if empty:
        raise ValueError(f"grid values must be non-empty; empty: {empty}")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if trials is None or trials >= len(points):
        return points
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    chosen = np.random.default_rng(seed).choice(len(points), size=trials, replace=False)
    return [points[i] for i in sorted(chosen)]


def search_sasrec(
    train_sequences: Sequence[Sequence[int]],
    val_histories: Sequence[Sequence[int]],
    val_targets: Sequence[int],
    n_items: int,
    grid: Mapping[str, Sequence],
    base: SASRecConfig,
    trials: int,
    time_budget_s: float | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Random search over `grid` (keys are SASRecConfig fields), selecting on the validation users."""
    known = {f.name for f in dataclasses.fields(SASRecConfig)}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ValueError(f"grid keys {unknown} are not SASRecConfig fields ({sorted(known)})")
    started = time.perf_counter()
    best: tuple[float, object, dict] | None = None
    done: list[Trial] = []
    for settings in grid_points(grid, trials, base.seed):
        if done and time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            break
        model, info = fit_sasrec(
            train_sequences, val_histories, val_targets, n_items, dataclasses.replace(base, **settings)
        )
        trial = Trial(settings, info[f"val_{base.metric}"], info["train_seconds"], info)
        done.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if best is None or trial.metric > best[0]:
            best = (trial.metric, model, settings)
    return SearchResult(best[1], best[2], base.metric, done)


def search_item_knn(
    train_sequences: Sequence[Sequence[int]],
    val_histories: Sequence[Sequence[int]],
    val_targets: Sequence[int],
    n_items: int,
    neighbours: Sequence[int],
    similarities: Sequence[Similarity],
    metric: str = "ndcg@10",
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Every (k, similarity) in the grid, selecting on the validation users."""
    metric_cutoff(metric)
    best: tuple[float, ItemKNN, dict] | None = None
    done: list[Trial] = []
    for settings in grid_points({"k": list(neighbours), "similarity": list(similarities)}, None, 0):
        started = time.perf_counter()
        model = ItemKNN.fit(train_sequences, n_items, settings["k"], settings["similarity"])
        seconds = time.perf_counter() - started
        trial = Trial(settings, validation_metric(model, val_histories, val_targets, metric), seconds)
        done.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if best is None or trial.metric > best[0]:
            best = (trial.metric, model, settings)
    return SearchResult(best[1], best[2], metric, done)


@dataclass(frozen=True)
class BaselineSearch:
    """The search space and budget of both baselines (the recipe's `baselines` section).

    Default budget: 3 SASRec trials drawn from a 32-point grid, each at most 15 epochs with
    patience 2; item-kNN's whole 8-point grid. `threads` sets torch's CPU threads while training
    (None keeps torch's default): on a small shared CPU one thread is several times faster.
    """

    sasrec_grid: Mapping[str, Sequence] = field(
        default_factory=lambda: {
            "hidden": (32, 64), "blocks": (1, 2), "dropout": (0.2, 0.5), "lr": (1e-3, 3e-3), "max_len": (20, 50),
        }
    )
    sasrec_trials: int = 3
    epochs: int = 15
    patience: int = 2
    batch_size: int = 128
    heads: int = 1
    knn_neighbours: Sequence[int] = (20, 50, 100, 200)
    knn_similarities: Sequence[Similarity] = ("cosine", "cooccurrence")
    metric: str = "ndcg@10"
    time_budget_s: float | None = None
    threads: int | None = None
    seed: int = 0

    def sasrec_base(self) -> SASRecConfig:
        """The SASRec settings every trial shares (the grid overrides the rest)."""
        return SASRecConfig(
            heads=self.heads, epochs=self.epochs, patience=self.patience, batch_size=self.batch_size,
            seed=self.seed, metric=self.metric,
        )


def tune_baselines(
    data: BaselineData, search: BaselineSearch, on_trial: Callable[[str, Trial], None] | None = None
) -> dict[str, SearchResult]:
    """Search both baselines on the validation users; {"sasrec": ..., "item_knn": ...}.

    `on_trial(method, trial)` is called after every trial (progress logs, tracking).
    """
    def report(method: str) -> Callable[[Trial], None] | None:
        return None if on_trial is None else lambda trial: on_trial(method, trial)

    validation = (data.train_sequences, data.val_histories, data.val_targets, data.n_items)
    with torch_threads(search.threads):
        return {
            "sasrec": search_sasrec(
                *validation, grid=search.sasrec_grid, base=search.sasrec_base(), trials=search.sasrec_trials,
                time_budget_s=search.time_budget_s, on_trial=report("sasrec"),
            ),
            "item_knn": search_item_knn(
                *validation, neighbours=search.knn_neighbours, similarities=search.knn_similarities,
                metric=search.metric, on_trial=report("item_knn"),
            ),
        }


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU thread count set to `count` inside the block, restored after (None: unchanged)."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"threads must be >= 1 or None, got {count}")
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pinned_overrides(results: Mapping[str, SearchResult]) -> dict:
    """The recipe override that fixes both baselines at their chosen settings (one-point grids),
    so a later run (RecipeResource.overrides, or pasted into the recipe) trains them without
    searching again."""
    sasrec, knn = results["sasrec"].settings, results["item_knn"].settings
    return {
        "baselines": {
            "sasrec_grid": {name: [value] for name, value in sasrec.items()},
            "sasrec_trials": 1,
            "knn_neighbours": [knn["k"]],
            "knn_similarities": [knn["similarity"]],
        }
    }


@dataclass(frozen=True)
class TunedBaselines:
    """Both baselines tuned on the validation users and saved: each search's result, the seconds
    the searches took, and each chosen model's folder."""

    results: dict[str, SearchResult]
    metric: str  # the validation metric the searches chose by
    seconds: float
    model_files: dict[str, Path]

    @property
    def chosen(self) -> dict[str, dict]:
        return {name: result.settings for name, result in self.results.items()}

    @property
    def val_metrics(self) -> dict[str, float]:
        return {name: result.metric for name, result in self.results.items()}

    @property
    def overrides(self) -> dict:
        return pinned_overrides(self.results)


def tune_and_save_baselines(
    cleaned_histories: pl.DataFrame, user_examples: pl.DataFrame, item_catalog: pl.DataFrame,
    search: BaselineSearch, folder: Path, on_trial: Callable[[str, Trial], None] | None = None,
) -> TunedBaselines:
    """The baseline_models step: fit both baselines on the train users' sequences over the
    catalogue, choose their settings on the val users (`tune_baselines`), and save the chosen
    models in `folder` with the settings and the recipe override that pins them."""
    data = baseline_data(cleaned_histories, user_examples, item_catalog["item_id"].to_list())
    started = time.perf_counter()
    results = tune_baselines(data, search, on_trial=on_trial)
    seconds = time.perf_counter() - started
    chosen = {name: result.settings for name, result in results.items()}
    files = save_baseline_models(
        folder, {name: result.model for name, result in results.items()}, data.item_ids,
        {"chosen": chosen, "metric": search.metric, "recipe_overrides": pinned_overrides(results)},
    )
    return TunedBaselines(results, search.metric, seconds, {name: files[name] for name in results})
