"""The rank reward against hand-computed NDCG / MRR on a catalogue built around the profile."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.reward import RankReward, reward_from_ranks

PROFILE = "enjoys funny animation and classic comedy films"
ITEMS = ["a", "b", "c", "d", "e", "f"]
# Cosine of each item with the profile's embedding, by construction.
COSINES = [1.0, 0.9, 0.7, 0.5, 0.3, 0.1]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder) -> TextEncoder:
    return TextEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"))


@pytest.fixture(scope="module")
def index(encoder) -> ItemIndex:
    """Item k = cos_k * q + sin_k * b_k, with q the profile's embedding and q, b_1.. orthonormal:
    the profile's cosine score for item k is exactly COSINES[k]."""
    query = encoder.encode([PROFILE])[0].astype(np.float64)
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(np.column_stack([query, rng.normal(size=(len(query), len(ITEMS)))]))
    basis = basis.T * np.sign(basis[:, 0] @ query)  # first row = +q (QR may flip its sign)
    vectors = [c * basis[0] + math.sqrt(1 - c * c) * basis[k + 1] for k, c in enumerate(COSINES)]
    return ItemIndex.build(ITEMS, np.array(vectors))


def _reward(encoder, index, kind, targets, histories, completions=None):
    completions = completions or [PROFILE] * len(targets)
    reward = RankReward(encoder, index, kind=kind)
    return reward(["prompt"] * len(targets), completions, target_item_id=targets, history_item_ids=histories)


def test_ndcg_and_mrr_match_the_hand_computed_ranks_with_history_excluded(encoder, index):
    # target c (0.7): a and b score higher; a is in the history, so the rank is 2 (3 without).
    # target e (0.3): a, b, c, d higher; a and b are history, so the rank is 3.
    targets, histories = ["c", "c", "e"], [["a"], [], ["a", "b"]]

    ndcg = _reward(encoder, index, "ndcg", targets, histories)
    mrr = _reward(encoder, index, "mrr", targets, histories)

    assert ndcg == pytest.approx([1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(4)], abs=1e-6)
    assert mrr == pytest.approx([1 / 2, 1 / 3, 1 / 3], abs=1e-6)


def test_log_rank_pays_every_halving_of_the_rank_alike_from_1_at_the_top_to_0_at_the_bottom(encoder, index):
    # Same ranks as above (2, 3, 3) and the top and bottom ranks of the catalogue.
    n = len(ITEMS)
    log_rank = _reward(encoder, index, "log_rank", ["c", "c", "e"], [["a"], [], ["a", "b"]])

    assert log_rank == pytest.approx([1 - math.log(r) / math.log(n) for r in (2, 3, 3)], abs=1e-6)
    assert reward_from_ranks(np.array([1.0, n]), "log_rank", n).tolist() == pytest.approx([1.0, 0.0])
    deep = reward_from_ranks(np.array([250.0, 500.0, 1000.0]), "log_rank", 1348)
    assert deep[0] - deep[1] == pytest.approx(deep[1] - deep[2])  # NDCG's steps there: 0.014, 0.011
    with pytest.raises(ValueError, match="log_rank"):
        RankReward(encoder, index, kind="rank")


def test_later_targets_make_the_reward_the_mean_over_every_target_of_the_row(encoder, index):
    # Ranks with history [a]: b 1, c 2, d 3, e 4, f 5 (a excluded).
    reward = RankReward(encoder, index, kind="mrr")
    rows = ["prompt"] * 3
    completions = [PROFILE] * 3

    scores = reward(rows, completions, target_item_id=["c", "c", "f"], history_item_ids=[["a"]] * 3,
                    later_target_ids=[["b", "e"], [], ["b"]])

    assert scores == pytest.approx([(1 / 2 + 1 + 1 / 4) / 3, 1 / 2, (1 / 5 + 1) / 2], abs=1e-6)
    with pytest.raises(ValueError, match="1 later_target_ids"):
        reward(rows, completions, target_item_id=["c"] * 3, history_item_ids=[["a"]] * 3, later_target_ids=[[]])


def test_conversational_completions_score_like_plain_strings(encoder, index):
    messages = [[{"role": "assistant", "content": PROFILE}]]
    assert _reward(encoder, index, "mrr", ["d"], [[]], completions=messages) == pytest.approx([1 / 4])


def test_a_profile_overflowing_the_encoder_window_gets_zero(encoder, index):
    overflowing = " ".join(["comedy"] * (encoder.max_tokens() + 5))
    assert encoder.token_counts([overflowing])[0] > encoder.max_tokens()

    rewards = _reward(encoder, index, "ndcg", ["c", "c"], [[], []], completions=[overflowing, PROFILE])

    assert rewards[0] == 0.0
    assert rewards[1] == pytest.approx(1 / math.log2(4))


def test_the_item_bias_of_the_index_is_added_to_the_cosine_scores(encoder, index):
    # +1 lifts f (0.1 -> 1.1) above c (0.7); -1 drops b (0.9 -> -0.1) below it: c stays third.
    bias = np.array([0.0, -1.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    biased = ItemIndex.build(ITEMS, index.vectors, bias=bias)
    assert _reward(encoder, biased, "mrr", ["c"], [[]]) == pytest.approx([1 / 3])
    assert _reward(encoder, biased, "mrr", ["c"], [["a"]]) == pytest.approx([1 / 2])
