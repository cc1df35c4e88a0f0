"""Every trainer raises its own objective on what it trains on.

One test per trainer: REBEL, GRPO and RLOO (TRL), best-of-n fine-tuning (TRL's SFT), contrastive
recommender training and the item head. Each starts from the tiny models built in code (float32
forced), trains on a fixed set, and asserts that the set's metric after training beats its start
by a margin: the writers' mean GREEDY reward (RewardProbe, as the pipeline's probe computes it), the
recommenders' NDCG of the set's targets.

The writers' reward is the pipeline's RankReward over an index of a one-word catalogue under the
tiny encoder: every profile is ranked against 30 genre words and paid by the rank of "musical".
The encoder's word-piece embeddings place some words' (and word pieces') profiles nearer
"musical" than others, so what the writer must learn is which of its words to write; the random
tiny LM starts far below the reward of 1 that "musical" ranked first would pay.

The margins are set from bench/studies/learning_margins.py (results in bench/results/learning_margins.md):
each trainer's gain over seeds 0-4, with the update intact and with it broken. Each margin sits
below the smallest intact gain and above the largest broken one. `pytest
tests/training/test_learning.py --broken-update` runs the same tests with every update broken
(the writers trained on the NEGATED reward, so their advantage's sign is flipped; the
recommenders' loss negated): every test must then fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from lpt_core import metrics
from lpt_core.config import BestOfNConfig, ContrastiveConfig, ItemHeadConfig, ModelsConfig, RLConfig
from lpt_core.models import load_generator
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training import contrastive, item_head
from lpt_core.training.best_of_n import best_of_n
from lpt_core.training.examples import RLExample
from lpt_core.training.item_head import HeadExamples, fit_item_head
from lpt_core.training.policy import make_policy
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import RewardProbe, run_rl_phase

SEED = 0
TARGET = "musical"
CATALOGUE = (
    TARGET, "drama", "comedy", "action", "thriller", "horror", "romance", "documentary", "animation",
    "crime", "mystery", "fantasy", "western", "family", "adventure", "war", "science", "fiction",
    "classic", "modern", "dark", "funny", "sad", "old", "long", "short", "story", "music", "star", "year",
)
# Eight fixed users: the prompts differ, the target is the same, so the set's reward can rise
# only if the writer learns what to write for all of them.
PROMPTS = tuple(
    f"{opening} {title}"
    for opening in ("The user rated the following movies.", "Review from the user: a great cast",
                    "Title: Heat", "Please give a summary.")
    for title in ("Toy Story", "Emma")
)
MAX_NEW_TOKENS = 8
CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")

# Each trainer's update count and margin (bench/results/learning_margins.md: smallest intact gain
# over seeds 0-4 / largest broken gain).
REBEL = RLConfig(
    algorithm={"name": "rebel", "passes_per_batch": 2}, updates_per_round=100, prompts_per_update=8,
    micro_batch_size=16,
    sampling={"max_new_tokens": MAX_NEW_TOKENS}, learning_rate=1e-2, beta=0.0,
)
GRPO = RLConfig(
    algorithm="grpo", updates_per_round=40, prompts_per_update=8, samples_per_prompt=4, micro_batch_size=16,
    sampling={"max_new_tokens": MAX_NEW_TOKENS}, learning_rate=1e-2, beta=0.0,
)
RLOO = RLConfig.model_validate({**GRPO.model_dump(), "algorithm": "rloo"})
BEST_OF_N = BestOfNConfig(
    iterations=4, samples=16, sampling={"max_new_tokens": MAX_NEW_TOKENS}, batch_size=128, epochs=4, learning_rate=1e-2,
    micro_batch_size=4,
)
WRITER_MARGIN = {"rebel": 0.1, "grpo": 0.15, "rloo": 0.15, "best_of_n": 0.05}
RECOMMENDER_MARGIN = {"contrastive": 0.15, "item_head": 0.15}

pytestmark = pytest.mark.usefixtures("one_thread")


class NegatedReward:
    """The broken update's reward: the same ranks, paid with the opposite sign (TRL reads __name__)."""

    __name__ = "negated_rank_reward"

    def __init__(self, reward: RankReward) -> None:
        self.reward = reward

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        return [-value for value in self.reward(*args, **kwargs)]


class NegatedMNRL(MultipleNegativesRankingLoss):
    """The broken update's contrastive loss: gradient ascent on InfoNCE."""

    def compute_loss_from_embeddings(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return -super().compute_loss_from_embeddings(*args, **kwargs)


@dataclass(frozen=True)
class Gain:
    start: float
    end: float

    @property
    def gain(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.start:.4f} -> {self.end:.4f} ({self.gain:+.4f})"


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder) -> TextEncoder:
    return TextEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"))


def catalogue_reward(encoder: TextEncoder) -> RankReward:
    """The pipeline's reward over the one-word catalogue, paid by the rank of TARGET (NDCG)."""
    return RankReward(encoder, ItemIndex.build(list(CATALOGUE), encoder.encode(list(CATALOGUE))), kind="ndcg")


def writer_examples(tokenizer: Any) -> list[RLExample]:
    return [
        RLExample(
            tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True),
            TARGET,
            [],
        )
        for text in PROMPTS
    ]


def writer_gain(
    trainer: str, lm_folder: Path, encoder: TextEncoder, seed: int, scratch: Path, broken: bool = False
) -> Gain:
    """The fixed set's mean greedy reward before and after `trainer` ran on it (the trainer
    paid with the negated reward when `broken`)."""
    model, tokenizer = load_generator(str(lm_folder), CPU_FP32)
    torch.manual_seed(seed)  # the LoRA's initial A: the same whatever ran before in this process
    examples = writer_examples(tokenizer)
    reward = catalogue_reward(encoder)
    training_reward = NegatedReward(reward) if broken else reward
    cfg = BEST_OF_N if trainer == "best_of_n" else {"rebel": REBEL, "grpo": GRPO, "rloo": RLOO}[trainer]
    policy = make_policy(model, REBEL)  # every writer trainer here has RLConfig's default LoRA
    probe = RewardProbe(examples, policy, tokenizer, reward, cfg.sampling)
    start = probe()
    if trainer == "best_of_n":
        best_of_n(policy, tokenizer, examples, training_reward, cfg, seed, scratch)
    else:
        run_rl_phase(policy, tokenizer, examples, training_reward, cfg, seed, scratch)
    return Gain(start, probe())


@pytest.mark.parametrize("trainer", ["rebel", "grpo", "rloo", "best_of_n"])
def test_the_writer_s_greedy_reward_on_its_training_users_rises(trainer, tiny_lm_folder, encoder, broken_update, tmp_path):
    result = writer_gain(trainer, tiny_lm_folder, encoder, SEED, tmp_path, broken=broken_update)

    assert result.gain > WRITER_MARGIN[trainer], f"{trainer}: greedy reward {result}"


# The recommenders' fixed set: profiles, each with its own target among the catalogue's items.
PROFILES = (
    "loves slow dark thriller films", "enjoys funny family comedy shows", "likes classic western war movies",
    "hates horror, likes romance stories", "enjoys science fiction and fantasy books", "likes crime mystery series",
    "loves old musical films with great music", "enjoys long adventure stories for children",
    "likes short sad drama films", "loves documentary series about war", "enjoys animation for the family",
    "likes fast action and crime", "loves modern science fiction shows", "enjoys funny romance movies",
    "likes dark fantasy adventure", "loves classic mystery books",
)
ITEMS = tuple(f"Title: {word}\nCategory: {word}, film" for word in CATALOGUE)
TARGETS = tuple(ITEMS[(7 * row + 3) % len(ITEMS)] for row in range(len(PROFILES)))  # distinct, unrelated
CONTRASTIVE = ContrastiveConfig(steps_per_round=30, batch_size=8, learning_rate=1e-3)
HEAD = ItemHeadConfig(kind="linear", bias_init="zero", epochs=40, patience=40, learning_rate=1e-2, batch_size=8)


def targets_ndcg(encoder: TextEncoder, index: ItemIndex | None = None) -> float:
    """Mean NDCG (full rank) of each profile's target, ranked by `encoder` over ITEMS (or `index`)."""
    index = index or ItemIndex.build(list(ITEMS), encoder.encode(list(ITEMS)))
    ranks = index.target_ranks(encoder.encode(list(PROFILES)), list(TARGETS), [[] for _ in PROFILES])
    return float(metrics.per_user_metrics(ranks, (len(ITEMS),))[f"ndcg@{len(ITEMS)}"].mean())


def contrastive_gain(encoder_folder: Path, seed: int, broken: bool = False) -> Gain:
    """The fixed set's targets' NDCG before and after contrastive training on it."""
    model = SentenceTransformer(str(encoder_folder), device="cpu")
    encoder = TextEncoder(model)
    start = targets_ndcg(encoder)
    with pytest.MonkeyPatch.context() as patch:
        if broken:
            patch.setattr(contrastive, "MultipleNegativesRankingLoss", NegatedMNRL)
        contrastive.train_recommender(model, list(PROFILES), list(TARGETS), CONTRASTIVE, seed)
    return Gain(start, targets_ndcg(encoder))


def item_head_gain(encoder: TextEncoder, seed: int, broken: bool = False) -> Gain:
    """The fixed set's targets' NDCG under cosine, then under the head fitted on the same set (its
    val rows are the train rows: this is in-sample fitting)."""
    base = ItemIndex.build(list(ITEMS), encoder.encode(list(ITEMS)))
    rows = HeadExamples(encoder.encode(list(PROFILES)), base.positions(list(TARGETS)), [np.array([], dtype=np.int64)] * len(PROFILES))
    with pytest.MonkeyPatch.context() as patch:
        if broken:
            batch_loss = item_head._batch_loss
            patch.setattr(item_head, "_batch_loss", lambda *args: -batch_loss(*args))
        fitted = fit_item_head(base.vectors, rows, rows, HEAD, seed)
    return Gain(targets_ndcg(encoder, base), targets_ndcg(encoder, fitted.head.index(list(ITEMS), base.vectors)))


def test_contrastive_training_raises_its_training_profiles_target_ndcg(tiny_encoder_folder, broken_update):
    result = contrastive_gain(tiny_encoder_folder, SEED, broken=broken_update)

    assert result.gain > RECOMMENDER_MARGIN["contrastive"], f"contrastive: target NDCG {result}"


def test_the_item_head_raises_its_training_rows_target_ndcg(encoder, broken_update):
    result = item_head_gain(encoder, SEED, broken=broken_update)

    assert result.gain > RECOMMENDER_MARGIN["item_head"], f"item head: target NDCG {result}"
