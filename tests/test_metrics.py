"""Recall/NDCG/MRR@K by hand, and the paired user-level bootstrap's coverage and pairing."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_core.metrics import metric_keys, paired_bootstrap, per_user_metrics, summarise

RANKS = np.array([1, 2, 3, 11, 25])


def test_metrics_equal_hand_computed_values():
    values = per_user_metrics(RANKS, [5, 10, 20])
    np.testing.assert_allclose(values["recall@5"], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(values["ndcg@5"], [1, 1 / np.log2(3), 0.5, 0, 0])
    np.testing.assert_allclose(values["mrr@5"], [1, 0.5, 1 / 3, 0, 0])
    np.testing.assert_allclose(values["recall@20"], [1, 1, 1, 1, 0])
    np.testing.assert_allclose(values["ndcg@20"], [1, 1 / np.log2(3), 0.5, 1 / np.log2(12), 0])
    np.testing.assert_allclose(values["mrr@20"], [1, 0.5, 1 / 3, 1 / 11, 0])

    means = summarise(RANKS, [5, 10, 20])
    assert list(means) == metric_keys([5, 10, 20])
    assert means["recall@5"] == means["recall@10"] == pytest.approx(0.6)
    assert means["recall@20"] == pytest.approx(0.8)
    assert means["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3) + 0.5) / 5)
    assert means["ndcg@20"] == pytest.approx((1 + 1 / np.log2(3) + 0.5 + 1 / np.log2(12)) / 5)
    assert means["mrr@10"] == pytest.approx((1 + 0.5 + 1 / 3) / 5)
    assert means["mrr@20"] == pytest.approx((1 + 0.5 + 1 / 3 + 1 / 11) / 5)


def test_tied_half_ranks_are_scored_and_bad_ranks_rejected():
    assert summarise(np.array([1.5]), [1, 2])["recall@1"] == 0.0
    assert summarise(np.array([1.5]), [1, 2])["ndcg@2"] == pytest.approx(1 / np.log2(2.5))
    with pytest.raises(ValueError, match=">= 1"):
        summarise(np.array([0, 3]), [5])


def geometric_ranks(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.geometric(p, size=n).astype(np.float64)


def test_interval_covers_the_population_value_about_as_often_as_promised():
    p, k = 0.05, 10
    truth = 1 - (1 - p) ** k  # Recall@10 of geometric ranks
    rng = np.random.default_rng(0)
    covered = []
    for trial in range(60):
        ranks = geometric_ranks(rng, 800, p)
        users = [str(u) for u in range(800)]
        interval = paired_bootstrap({"m": ranks}, users, [k], samples=300, seed=trial).methods["m"]
        covered.append(interval[f"recall@{k}"].low <= truth <= interval[f"recall@{k}"].high)
    assert 0.85 <= np.mean(covered) <= 1.0


def test_big_sample_interval_covers_the_population_mean():
    p = 0.02
    ranks = geometric_ranks(np.random.default_rng(5), 20_000, p)
    result = paired_bootstrap({"m": ranks}, [str(u) for u in range(20_000)], [20], samples=500)
    interval = result.methods["m"]["recall@20"]
    assert interval.low <= 1 - (1 - p) ** 20 <= interval.high
    assert interval.high - interval.low < 0.02
    assert interval.mean == pytest.approx(summarise(ranks, [20])["recall@20"])


def test_pairing_gives_identical_methods_a_zero_width_difference():
    ranks = geometric_ranks(np.random.default_rng(1), 500, 0.1)
    users = [str(u) for u in range(500)]
    shifted = ranks + (np.arange(500) % 3 == 0)
    result = paired_bootstrap(
        {"a": ranks, "same": ranks.copy(), "shifted": shifted}, users, [5, 10], samples=200, baseline="a"
    )
    assert set(result.differences) == {"same - a", "shifted - a"}
    for interval in result.differences["same - a"].values():
        assert interval.mean == interval.low == interval.high == 0.0
    worse = result.differences["shifted - a"]["ndcg@10"]
    assert worse.high < 0  # a clear, paired difference
    # The paired difference interval is narrower than the two methods' own intervals.
    own = result.methods["a"]["ndcg@10"]
    assert worse.high - worse.low < own.high - own.low


def test_a_users_windows_are_resampled_together():
    rng = np.random.default_rng(2)
    ranks = geometric_ranks(rng, 300, 0.1)
    users = [f"u{i}" for i in range(300)]
    once = paired_bootstrap({"m": ranks}, users, [10], samples=200, seed=3).methods["m"]["ndcg@10"]
    # Each user twice with identical rows: resampling users gives exactly the same intervals,
    # resampling rows would have made them about 1/sqrt(2) as wide.
    twice = paired_bootstrap(
        {"m": np.repeat(ranks, 2)}, np.repeat(users, 2).tolist(), [10], samples=200, seed=3
    ).methods["m"]["ndcg@10"]
    assert (twice.mean, twice.low, twice.high) == pytest.approx((once.mean, once.low, once.high))
    as_rows = paired_bootstrap(
        {"m": np.repeat(ranks, 2)}, [str(i) for i in range(600)], [10], samples=200, seed=3
    ).methods["m"]["ndcg@10"]
    assert as_rows.high - as_rows.low < 0.85 * (once.high - once.low)


def test_bootstrap_arguments_are_checked():
    ranks = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="baseline 'zzz'"):
        paired_bootstrap({"a": ranks}, ["u", "v"], [5], baseline="zzz")
    with pytest.raises(ValueError, match="method 'a': 2 ranks for 3 user ids"):
        paired_bootstrap({"a": ranks}, ["u", "v", "w"], [5])
    pairs = paired_bootstrap({"a": ranks, "b": ranks, "c": ranks}, ["u", "v"], [5], samples=10)
    assert list(pairs.differences) == ["a - b", "a - c", "b - c"]
