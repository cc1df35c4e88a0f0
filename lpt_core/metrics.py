"""Ranking metrics on full-catalogue target ranks, with paired, user-level bootstrap intervals.

Each evaluation row has one relevant item (its target), so for a 1-based rank r and cutoff K:
Recall@K = [r <= K] (the hit rate), NDCG@K = 1/log2(r + 1) if r <= K else 0 (the ideal DCG is 1),
MRR@K = 1/r if r <= K else 0. A method's score is the mean over rows.

Intervals resample USERS, not rows: a user with several windows is one draw, all their rows going
in together, because a user's windows are correlated and counting them as independent would make
intervals too narrow. Every method sees the SAME resamples (paired), so the interval of a
difference between two methods reflects only how they differ on the same users; that is what
decides "A beats B", and it is much narrower than comparing two separate intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

METRIC_NAMES = ("recall", "ndcg", "mrr")
# Resamples drawn at once: bounds the (resamples x users) weight matrix held in memory.
BOOTSTRAP_CHUNK = 100


def metric_cutoff(metric: str) -> int:
    """The K of a metric name such as "ndcg@10" (one of METRIC_NAMES at some K)."""
    name, _, k = metric.partition("@")
    if name not in METRIC_NAMES or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must be one of {METRIC_NAMES} at a cutoff, like 'ndcg@10'; got {metric!r}")
    return int(k)


def metric_keys(ks: Sequence[int]) -> list[str]:
    """Metric names in report order: recall@5, ndcg@5, mrr@5, recall@10, ..."""
    return [f"{name}@{k}" for k in ks for name in METRIC_NAMES]


def per_user_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-row Recall/NDCG/MRR@K for 1-based `ranks` (fractional ranks from ties are allowed)."""
    ranks = _check_ranks(ranks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive cutoffs, got {list(ks)}")
    values: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks <= k
        values[f"recall@{k}"] = hit.astype(np.float64)
        values[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
        values[f"mrr@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
    return values


def summarise(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean of each metric over rows."""
    return {key: float(column.mean()) for key, column in per_user_metrics(ranks, ks).items()}


@dataclass(frozen=True)
class Interval:
    mean: float  # the estimate on the full evaluation set
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class BootstrapResult:
    """Intervals per method and metric, and per difference ("A - B") and metric."""

    methods: dict[str, dict[str, Interval]]
    differences: dict[str, dict[str, Interval]]
    baseline: str | None
    n_users: int
    n_examples: int
    samples: int
    confidence: float
    seed: int


def paired_bootstrap(
    method_ranks: dict[str, np.ndarray],
    user_ids: Sequence[str],
    ks: Sequence[int],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    baseline: str | None = None,
) -> BootstrapResult:
    """Percentile intervals from one set of user resamples shared by all methods.

    Differences are each method minus `baseline` ("profile - random"), or every pair in the
    order given when `baseline` is None.
    """
    if not method_ranks:
        raise ValueError("method_ranks is empty: nothing to evaluate")
    if samples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need samples >= 1 and 0 < confidence < 1, got {samples}, {confidence}")
    if baseline is not None and baseline not in method_ranks:
        raise ValueError(f"baseline {baseline!r} is not among the methods {list(method_ranks)}")
    if len(user_ids) == 0:
        raise ValueError("user_ids is empty: no evaluation rows")
    users, user_of_row = np.unique(np.asarray(user_ids, dtype=str), return_inverse=True)
    keys = metric_keys(ks)
    # Per user sums of each metric (users x metrics) and row counts: a resample's mean over rows is
    # then (weights @ sums) / (weights @ counts), with weights = how often each user was drawn.
    rows_per_user = np.bincount(user_of_row, minlength=len(users)).astype(np.float64)
    sums = {}
    for name, ranks in method_ranks.items():
        if len(ranks) != len(user_of_row):
            raise ValueError(f"method {name!r}: {len(ranks)} ranks for {len(user_of_row)} user ids")
        values = per_user_metrics(ranks, ks)
        sums[name] = np.stack(
            [np.bincount(user_of_row, weights=values[key], minlength=len(users)) for key in keys],
            axis=1,
        )

    estimates = {name: user_sums.sum(axis=0) / len(user_of_row) for name, user_sums in sums.items()}
    draws = {name: np.empty((samples, len(keys))) for name in sums}
    rng = np.random.default_rng(seed)
    uniform = np.full(len(users), 1.0 / len(users))
    for start in range(0, samples, BOOTSTRAP_CHUNK):
        weights = rng.multinomial(len(users), uniform, size=min(BOOTSTRAP_CHUNK, samples - start))
        weights = weights.astype(np.float64)
        rows_drawn = weights @ rows_per_user
        for name, user_sums in sums.items():
            draws[name][start : start + len(weights)] = (weights @ user_sums) / rows_drawn[:, None]

    def intervals(estimate: np.ndarray, resampled: np.ndarray) -> dict[str, Interval]:
        tail = (1.0 - confidence) / 2.0 * 100.0
        low, high = np.percentile(resampled, [tail, 100.0 - tail], axis=0)
        return {
            key: Interval(float(estimate[j]), float(low[j]), float(high[j]))
            for j, key in enumerate(keys)
        }

    pairs = (
        [(name, baseline) for name in method_ranks if name != baseline]
        if baseline is not None
        else list(combinations(method_ranks, 2))
    )
    return BootstrapResult(
        methods={name: intervals(estimates[name], draws[name]) for name in method_ranks},
        differences={
            f"{a} - {b}": intervals(estimates[a] - estimates[b], draws[a] - draws[b]) for a, b in pairs
        },
        baseline=baseline,
        n_users=len(users),
        n_examples=len(user_of_row),
        samples=samples,
        confidence=confidence,
        seed=seed,
    )


def _check_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be one-dimensional, got shape {ranks.shape}")
    if ranks.size and not (np.all(np.isfinite(ranks)) and ranks.min() >= 1.0):
        raise ValueError(f"ranks must be finite and >= 1 (1 = best), got min {np.nanmin(ranks)}")
    return ranks
