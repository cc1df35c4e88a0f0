"""Contrastive recommender training: the loss is InfoNCE, it learns, the item bias learns
popularity, duplicate targets never share a batch, and the index ranks with the bias."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from lpt_core.config import ContrastiveConfig
from lpt_core.retrieval import ItemIndex
from lpt_core.training.contrastive import (
    ItemBias,
    ItemBiasedInfoNCE,
    batch_log_inclusion,
    distinct_target_batches,
    train_recommender,
)

PROFILES = [
    "loves slow dark thriller films",
    "enjoys funny family comedy shows",
    "likes classic western war movies",
    "hates horror, likes romance stories",
    "enjoys science fiction and fantasy books",
    "likes crime mystery series",
]
TARGETS = [
    "Title: thriller\nCategory: crime, mystery",
    "Title: comedy show\nCategory: family, animation",
    "Title: western\nCategory: war, classic",
    "Title: romance\nCategory: drama",
    "Title: fantasy book\nCategory: science fiction",
    "Title: detective series\nCategory: crime",
]


def load(folder: Path) -> SentenceTransformer:
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def test_mnrl_with_scale_10_is_cross_entropy_over_scaled_cosines_and_so_is_the_biased_loss():
    generator = torch.Generator().manual_seed(0)
    queries, targets = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    unit_q = queries / queries.norm(dim=1, keepdim=True)
    unit_t = targets / targets.norm(dim=1, keepdim=True)
    logits = 10.0 * unit_q @ unit_t.T
    direct = -torch.mean(torch.diagonal(logits) - torch.logsumexp(logits, dim=1))

    mnrl = MultipleNegativesRankingLoss(model=None, scale=10.0).compute_loss_from_embeddings([queries, targets], None)
    zero_bias = ItemBiasedInfoNCE(10.0, ItemBias(7))(queries, targets, torch.tensor([6, 0, 3, 2, 5]))

    torch.testing.assert_close(mnrl, direct)
    torch.testing.assert_close(zero_bias, direct)
    bias = ItemBias.from_numpy(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0], dtype=np.float32))
    biased = ItemBiasedInfoNCE(10.0, bias)(queries, targets, torch.tensor([6, 0, 3, 2, 5]))
    shifted = logits + torch.tensor([2.0, 0, 0, 0, 0])[None, :]  # column 0 is item 6
    expected = torch.nn.functional.cross_entropy(shifted, torch.arange(5))
    torch.testing.assert_close(biased, expected)
    log_inclusion = torch.log(torch.tensor([1.0, 0.5, 1.0, 0.25, 1.0, 1.0, 0.5]))
    corrected = ItemBiasedInfoNCE(10.0, bias, log_inclusion)(queries, targets, torch.tensor([6, 0, 3, 2, 5]))
    offsets = torch.tensor([2.0, 0, 0.0, 0, 0]) - torch.log(torch.tensor([0.5, 1.0, 0.25, 1.0, 1.0]))
    torch.testing.assert_close(corrected, torch.nn.functional.cross_entropy(logits + offsets, torch.arange(5)))


def test_log_inclusion_is_the_capped_chance_of_being_in_a_batch():
    log_inclusion = batch_log_inclusion([0, 0, 0, 0, 1, 2, 2, 3], num_items=5, batch_size=4)
    np.testing.assert_allclose(log_inclusion.exp().numpy(), [1.0, 0.5, 1.0, 0.5, 1.0])


def test_training_lowers_the_infonce_loss_on_a_fixed_batch(tiny_encoder_folder):
    encoder = load(tiny_encoder_folder)
    cfg = ContrastiveConfig(steps_per_round=12, batch_size=len(PROFILES), learning_rate=5e-3)
    steps: list[int] = []

    history = train_recommender(encoder, PROFILES, TARGETS, cfg, seed=0, on_step=lambda s, _: steps.append(s))

    assert steps == list(range(12)) and len(history) == 12
    assert all(r["batch_size"] == len(PROFILES) and r["seconds"] > 0 for r in history)
    first, last = history[0]["loss"], np.mean([r["loss"] for r in history[-3:]])
    assert last < 0.1 * first
    assert not encoder.training  # left ready for encoding


def test_item_bias_learns_to_favour_the_popular_target(tiny_encoder_folder):
    encoder = load(tiny_encoder_folder)
    # Item 0 is the target of half the users: under in-batch negatives it is the best guess for a
    # profile the embedding cannot place, which a bias can express directly.
    rng = np.random.default_rng(0)
    positions = [0] * 12 + rng.integers(1, 12, size=12).tolist()
    texts = [f"Title: item {p}" for p in positions]
    profiles = [f"user {u} likes movies" for u in range(len(positions))]
    bias = ItemBias(12)
    cfg = ContrastiveConfig(steps_per_round=12, batch_size=6, learning_rate=5e-2)

    train_recommender(encoder, profiles, texts, cfg, seed=0, target_positions=positions, item_bias=bias)

    values = bias.to_numpy()
    rare = [p for p in range(1, 12) if p in positions]
    assert values[0] > max(values[p] for p in rare)


def test_batches_never_hold_a_target_twice_and_cover_every_row():
    keys = [0, 0, 0, 1, 2, 3, 3, 4, 5, 6]
    batches = distinct_target_batches(keys, batch_size=4, rng=np.random.default_rng(1))
    drawn = [next(batches) for _ in range(30)]

    assert all(len(b) == 4 and len({keys[i] for i in b}) == 4 for b in drawn)
    counts = Counter(i for b in drawn for i in b)
    assert set(counts) == set(range(len(keys)))
    assert max(counts.values()) - min(counts.values()) <= 3  # each pass uses every row once


def test_batches_shrink_to_the_number_of_distinct_targets_and_need_two():
    batches = distinct_target_batches([7, 7, 8], batch_size=32, rng=np.random.default_rng(0))
    assert len(next(batches)) == 2
    with pytest.raises(ValueError, match="at least 2 distinct targets"):
        next(distinct_target_batches([7, 7], batch_size=4, rng=np.random.default_rng(0)))


def test_item_bias_needs_positions_in_range(tiny_encoder_folder):
    encoder = load(tiny_encoder_folder)
    cfg = ContrastiveConfig(steps_per_round=1, batch_size=2)
    with pytest.raises(ValueError, match="needs target_positions"):
        train_recommender(encoder, PROFILES, TARGETS, cfg, seed=0, item_bias=ItemBias(6))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        train_recommender(encoder, PROFILES, TARGETS, cfg, seed=0, target_positions=range(6), item_bias=ItemBias(3))


def test_index_adds_the_bias_to_ranks_and_top_k_and_keeps_it_on_disk(tmp_path):
    ids = ["a", "b", "c", "d"]
    vectors = np.eye(4, dtype=np.float32)
    query = np.array([[1.0, 0.5, 0.0, 0.0]], dtype=np.float32)  # scores: a > b > c = d
    plain = ItemIndex.build(ids, vectors)
    biased = ItemIndex.build(ids, vectors, bias=np.array([0.0, 0.0, 2.0, 0.0]))

    assert plain.target_ranks(query, ["c"], [[]])[0] == 3.5
    assert biased.target_ranks(query, ["c"], [[]])[0] == 1.0
    assert biased.target_ranks(query, ["b"], [["c"]])[0] == 2.0
    top_ids, top_scores = biased.top_k(query, 2, [["a"]])
    assert top_ids.tolist() == [["c", "b"]]
    np.testing.assert_allclose(top_scores, [[2.0, 0.5]])

    loaded = ItemIndex.load(biased.save(tmp_path / "index"))
    np.testing.assert_array_equal(loaded.bias, biased.bias)
    assert ItemIndex.load(plain.save(tmp_path / "plain")).bias is None
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        ItemIndex.build(ids, vectors, bias=np.zeros(3))


def test_early_stopping_keeps_the_weights_of_the_best_val_check(tiny_encoder_folder):
    encoder = load(tiny_encoder_folder)
    cfg = ContrastiveConfig(
        steps_per_round=20, batch_size=len(PROFILES), learning_rate=5e-3, val_every=2, val_patience=2
    )
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9])  # before step 0, after steps 2, 4, 6 (and never 8)
    snapshots = []

    def validate() -> float:
        snapshots.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})
        return next(scripted)

    history = train_recommender(encoder, PROFILES, TARGETS, cfg, seed=0, validate=validate)

    # Two checks without a gain over 0.3 (after step 2) stop training after step 6.
    assert len(history) == 6 and len(snapshots) == 4
    assert [r.get("val_ndcg@10") for r in history] == [None, 0.3, None, 0.2, None, 0.25]
    restored = encoder.state_dict()
    for name, weight in restored.items():
        torch.testing.assert_close(weight, snapshots[1][name], msg=name)
    assert any(not torch.equal(restored[name], snapshots[-1][name]) for name in restored)  # not the last
    assert not encoder.training
