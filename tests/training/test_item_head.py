"""The item-side head: untrained it is cosine, it learns a target that is a function of the query,
early stopping keeps the best epoch, history items stay out of the softmax, the residual obeys its
L2 weight, and a saved head ranks as the fitted one. Synthetic embeddings, float32, CPU."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_core import metrics
from lpt_core.config import HeadStart, ItemHeadConfig
from lpt_core.retrieval import ItemIndex
from lpt_core.training.item_head import (
    VAL_METRIC,
    HeadExamples,
    ItemHead,
    build_item_index,
    fit_item_head,
    popularity_prior,
)

ITEMS, DIM = 30, 8
IDS = [f"i{n}" for n in range(ITEMS)]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def world() -> dict:
    """Items, and rows whose target is the best item under a hidden bilinear map plus item
    popularity: learnable by a linear head, and far from plain cosine. Item 0 is in every
    history and is never a target."""
    rng = np.random.default_rng(0)
    keys = unit(rng.normal(size=(ITEMS, DIM)))
    hidden = rng.normal(size=(DIM, DIM)).astype(np.float32)
    popularity = rng.normal(scale=2.0, size=ITEMS).astype(np.float32)

    def rows(count: int, seed: int) -> HeadExamples:
        local = np.random.default_rng(seed)
        queries = unit(local.normal(size=(count, DIM)))
        histories, targets = [], []
        for query in queries:
            history = np.concatenate([[0], local.choice(np.arange(1, ITEMS), size=2, replace=False)])
            scores = 4.0 * (keys @ hidden @ query) + popularity
            scores[history] = -np.inf
            histories.append(history.astype(np.int64))
            targets.append(int(np.argmax(scores)))
        return HeadExamples(queries, np.array(targets), histories)

    return {"keys": keys, "train": rows(600, 1), "val": rows(150, 2), "small": rows(40, 3)}


def config(**overrides) -> ItemHeadConfig:
    settings = {"kind": "linear", "scale": 20.0, "epochs": 30, "patience": 3, "learning_rate": 0.02, "batch_size": 64,
                "bias_init": "zero"}
    return ItemHeadConfig(**{**settings, **overrides})


def ranks_of(index: ItemIndex, rows: HeadExamples) -> np.ndarray:
    return index.target_ranks(
        rows.queries, [IDS[t] for t in rows.targets], [[IDS[p] for p in h] for h in rows.histories]
    )


def test_the_untrained_head_ranks_as_cosine_does(world):
    head = ItemHead.identity(ITEMS, DIM, scale=20.0)
    cosine = ItemIndex.build(IDS, world["keys"])
    headed = head.index(IDS, world["keys"])
    np.testing.assert_array_equal(ranks_of(headed, world["val"]), ranks_of(cosine, world["val"]))
    no_history = [[] for _ in range(5)]
    assert headed.top_k(world["val"].queries[:5], 5, no_history)[0].tolist() == (
        cosine.top_k(world["val"].queries[:5], 5, no_history)[0].tolist()
    )


def test_fitting_raises_val_ndcg_and_keeps_the_best_epoch(world):
    fitted = fit_item_head(world["keys"], world["train"], world["val"], config(), seed=0)

    curve = [record["val_ndcg@10"] for record in fitted.history]
    assert fitted.history[0]["epoch"] == 0 and fitted.history[0]["train_loss"] is None
    assert fitted.best_val_ndcg == max(curve) > curve[0] + 0.2
    # The head returned is the best epoch's, not the last one's.
    assert fitted.best_val_ndcg == pytest.approx(_ndcg(fitted.head, world["keys"], world["val"]))
    # Deterministic given the seed.
    again = fit_item_head(world["keys"], world["train"], world["val"], config(), seed=0)
    np.testing.assert_array_equal(again.head.transform, fitted.head.transform)


def test_early_stopping_restores_the_best_epoch_when_val_gets_worse(world):
    # A few rows fitted hard: val NDCG peaks, then falls as the head memorises them.
    fitted = fit_item_head(
        world["keys"], world["small"], world["val"], config(kind="hybrid", learning_rate=0.2, residual_l2=0.0), seed=0
    )
    curve = [record["val_ndcg@10"] for record in fitted.history]
    stopped = len(curve) - 1
    assert stopped < 30 and stopped - fitted.best_epoch == 3  # patience 3
    assert curve[-1] < fitted.best_val_ndcg
    assert fitted.best_val_ndcg == pytest.approx(_ndcg(fitted.head, world["keys"], world["val"]))


def test_history_items_are_out_of_the_softmax(world):
    # Item 0 is in every row's history: masked, it gets no gradient, so its bias and residual
    # never move (unmasked, every row would push its bias down).
    fitted = fit_item_head(world["keys"], world["train"], world["val"], config(kind="hybrid"), seed=0)
    assert fitted.head.bias[0] == 0.0 and not fitted.head.residual[0].any()
    assert np.abs(fitted.head.bias[1:]).max() > 0.1


def test_a_huge_residual_weight_keeps_the_residual_at_zero(world):
    free = fit_item_head(world["keys"], world["small"], world["val"], config(kind="hybrid", residual_l2=0.0), seed=0)
    held = fit_item_head(world["keys"], world["small"], world["val"], config(kind="hybrid", residual_l2=1e6), seed=0)
    assert np.abs(free.head.residual).max() > 0.05
    assert np.abs(held.head.residual).max() < 1e-3 * np.abs(free.head.residual).max()
    linear = fit_item_head(world["keys"], world["small"], world["val"], config(kind="linear"), seed=0)
    assert not linear.head.residual.any()


def test_a_saved_head_loads_and_ranks_the_same(world, tmp_path):
    fitted = fit_item_head(world["keys"], world["train"], world["val"], config(kind="hybrid", epochs=2), seed=0)
    loaded = ItemHead.load(fitted.head.save(tmp_path / "head.npz"))

    for name in ("transform", "residual", "bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted.head, name))
    assert loaded.scale == fitted.head.scale
    index = build_item_index(IDS, world["keys"], head=loaded)
    np.testing.assert_array_equal(ranks_of(index, world["val"]), ranks_of(fitted.head.index(IDS, world["keys"]), world["val"]))
    # The index keeps the head's vectors as they are, and scores them plus the bias.
    np.testing.assert_allclose(index.vectors, fitted.head.item_vectors(world["keys"]), rtol=1e-6)
    np.testing.assert_array_equal(index.bias, fitted.head.bias)


def test_a_head_and_an_item_bias_are_not_both_added(world):
    with pytest.raises(ValueError, match="not both"):
        build_item_index(IDS, world["keys"], item_bias=np.zeros(ITEMS), head=ItemHead.identity(ITEMS, DIM, 20.0))
    with pytest.raises(ValueError, match="head kind"):
        fit_item_head(world["keys"], world["small"], world["val"], config(kind="none"), seed=0)


def _ndcg(head: ItemHead, keys: np.ndarray, rows: HeadExamples) -> float:
    ranks = ranks_of(head.index(IDS, keys), rows)
    return float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)))


def test_the_popularity_prior_is_smoothed_log_popularity_and_the_untrained_head_ranks_by_it_plus_cosine(world):
    counts = np.arange(ITEMS)
    prior = popularity_prior(counts)
    np.testing.assert_allclose(np.exp(prior).sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(prior[1] - prior[0], np.log(2.0), rtol=1e-6)  # counts 1 and 0, smoothed
    fitted = fit_item_head(world["keys"], world["train"], world["val"], config(bias_init="popularity", epochs=1),
                           seed=0, item_counts=counts)
    # Epoch 0 is the untrained head: cosine at the head's scale plus the prior, nothing else.
    untrained = ItemIndex.build(IDS, 20.0 * world["keys"], bias=prior, normalize=False)
    cosine_only = fit_item_head(world["keys"], world["train"], world["val"], config(epochs=1), seed=0)
    expected = metrics.summarise(ranks_of(untrained, world["val"]), (10,))["ndcg@10"]
    assert fitted.history[0]["val_ndcg@10"] == pytest.approx(expected)
    assert fitted.history[0]["val_ndcg@10"] != pytest.approx(cosine_only.history[0]["val_ndcg@10"])


def test_a_prior_that_carries_the_targets_popularity_starts_the_head_above_cosine(world):
    """The world's targets follow a hidden per-item popularity: counts drawn from it put the
    untrained head ahead of plain cosine on val, before any training."""
    counts = np.bincount(np.concatenate([world["train"].targets, world["small"].targets]), minlength=ITEMS)
    with_prior = fit_item_head(world["keys"], world["small"], world["val"], config(bias_init="popularity", epochs=1),
                               seed=0, item_counts=counts)
    zero = fit_item_head(world["keys"], world["small"], world["val"], config(epochs=1), seed=0)
    assert with_prior.history[0]["val_ndcg@10"] > zero.history[0]["val_ndcg@10"]


def test_a_popularity_prior_without_counts_is_a_clear_error(world):
    with pytest.raises(ValueError, match="item_counts"):
        fit_item_head(world["keys"], world["small"], world["val"], config(bias_init="popularity"), seed=0)
    with pytest.raises(ValueError, match="3 counts for a catalogue of 30"):
        fit_item_head(world["keys"], world["small"], world["val"], config(bias_init="popularity"), seed=0,
                      item_counts=np.ones(3))


def test_a_fit_from_several_starts_keeps_the_best_on_val_and_reports_only_its_epochs(world):
    """Whichever order two starts come in, the kept fit is the one that does better on val when
    fitted alone, and on_epoch sees only its records."""
    starts = (HeadStart(scale=20.0, bias_init="zero"), HeadStart(scale=0.5, bias_init="zero"))
    alone = {
        start: fit_item_head(world["keys"], world["train"], world["val"],
                             config(epochs=2, scale=start.scale), seed=0).best_val_ndcg
        for start in starts
    }
    assert alone[starts[0]] != pytest.approx(alone[starts[1]])
    winner = max(starts, key=alone.get)
    for first, other in (starts, starts[::-1]):
        seen = []
        fitted = fit_item_head(
            world["keys"], world["train"], world["val"], config(epochs=2, scale=first.scale, other_starts=(other,)),
            seed=0, on_epoch=lambda epoch, record: seen.append((epoch, record[VAL_METRIC])),
        )
        assert fitted.start == winner
        assert fitted.best_val_ndcg == pytest.approx(alone[winner])
        assert seen == [(r["epoch"], r[VAL_METRIC]) for r in fitted.history]
