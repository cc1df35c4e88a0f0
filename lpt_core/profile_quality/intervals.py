"""User-level bootstrap intervals for per-row scores (accuracy, grounded share, steerability...).

The same rule as lpt_core.metrics: resample USERS, all their rows together, and let every variant
see the same resamples, so the interval of "trained - zero_shot" reflects only how the two differ
on the same users. Rows where a score does not apply (a profile naming no genre has no grounded
share) are NaN and left out of that score's mean, in the estimate and in every resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lpt_core.metrics import Interval

NAN_INTERVAL = Interval(float("nan"), float("nan"), float("nan"))


def user_bootstrap(
    values: Mapping[str, np.ndarray],
    user_ids: Sequence[str],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    baseline: str | None = None,
) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Mean of each named per-row score with a percentile interval, and of each "name - baseline".

    All scores are rows of the same `user_ids`; differences are paired (same resamples). With no
    baseline, no differences are computed.
    """
    if samples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need samples >= 1 and 0 < confidence < 1, got {samples}, {confidence}")
    if baseline is not None and baseline not in values:
        raise ValueError(f"baseline {baseline!r} is not among the scores {list(values)}")
    users, user_of_row = np.unique(np.asarray(user_ids, dtype=str), return_inverse=True)
    sums, counts = {}, {}
    for name, column in values.items():
        column = np.asarray(column, dtype=np.float64)
        if column.shape != (len(user_of_row),):
            raise ValueError(f"score {name!r}: {column.shape} values for {len(user_of_row)} user ids")
        valid = ~np.isnan(column)
        sums[name] = np.bincount(user_of_row, weights=np.where(valid, column, 0.0), minlength=len(users))
        counts[name] = np.bincount(user_of_row, weights=valid.astype(np.float64), minlength=len(users))
    if len(users) == 0:
        return {name: NAN_INTERVAL for name in values}, {}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(users), np.full(len(users), 1.0 / len(users)), size=samples).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimates = {name: sums[name].sum() / counts[name].sum() for name in values}
        draws = {name: (weights @ sums[name]) / (weights @ counts[name]) for name in values}

    def interval(estimate: float, resampled: np.ndarray) -> Interval:
        if np.isnan(estimate):
            return NAN_INTERVAL
        tail = (1.0 - confidence) / 2.0 * 100.0
        low, high = np.nanpercentile(resampled, [tail, 100.0 - tail])
        return Interval(float(estimate), float(low), float(high))

    means = {name: interval(estimates[name], draws[name]) for name in values}
    differences = {
        f"{name} - {baseline}": interval(estimates[name] - estimates[baseline], draws[name] - draws[baseline])
        for name in values
        if baseline is not None and name != baseline
    }
    return means, differences
