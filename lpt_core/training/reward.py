"""The RL reward: how well a profile ranks its user's next item under the frozen recommender.

R(p) = 1/log2(rank+1) (NDCG, no cutoff), 1/rank (MRR) or 1 - ln(rank)/ln(N) ("log_rank", N = the
catalogue's size), rank = the target's rank among ALL catalogue items with the user's history left
out (docs/method.md, "Training"). NDCG and MRR are the paper's; they are nearly flat beyond the first
hundred ranks (NDCG 0.111 at rank 500, 0.100 at 1,000), so a profile that lifts the target from
rank 1,000 to 500 is barely paid. log_rank pays every halving of the rank the same, which gives
the policy a signal on the many users whose target sits deep in the catalogue.

With later targets (training.rl.reward_targets > 1) the reward is the mean over the next item and
the targets of the user's later windows or their next interactions (reward_targets_from): one
next item is a noisy judge of a profile of the user's taste (bench/results/reward_signal_full.md:
the next item's preference between two profiles agrees with the user's held-out later items in
55% of pairs, the mean log_rank over 4 targets in 65%).

A profile longer than the encoder's window gets 0: the encoder would silently truncate it, so the
policy must not be paid for text the recommender never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lpt_core.generation.base import profile_from_tokens

if TYPE_CHECKING:  # the retrieval stack (faiss) is the caller's: the trainers that take a reward
    # import this module where faiss is not installed (the GPU check)
    from lpt_core.retrieval import ItemIndex, TextEncoder

RewardKind = Literal["ndcg", "mrr", "log_rank"]
REWARD_KINDS: tuple[str, ...] = ("ndcg", "mrr", "log_rank")


class RankReward:
    """TRL reward-function signature: reward(prompts, completions, **dataset_columns) -> list[float].

    Holds the frozen recommender for one RL phase: the text encoder and the item index, whose
    exact scores (cosine, plus the learned item bias or head the index was built with) rank the
    catalogue.
    """

    __name__ = "rank_reward"  # TRL logs reward functions by __name__

    def __init__(
        self,
        encoder: TextEncoder,
        index: ItemIndex,
        kind: RewardKind = "ndcg",
    ) -> None:
        if kind not in REWARD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(REWARD_KINDS)}, got {kind!r}")
        self.encoder = encoder
        self.index = index
        self.kind = kind

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        target_item_id: Sequence[str],
        history_item_ids: Sequence[Sequence[str]],
        later_target_ids: Sequence[Sequence[str]] | None = None,
        **_: Any,
    ) -> list[float]:
        """One reward per completion: its mean reward over the row's target and later targets
        (none by default); `prompts` is unused (TRL passes it positionally)."""
        later_count = len(completions) if later_target_ids is None else len(later_target_ids)
        if not len(completions) == len(target_item_id) == len(history_item_ids) == later_count:
            raise ValueError(
                f"row counts differ: {len(completions)} completions, {len(target_item_id)} "
                f"target_item_id, {len(history_item_ids)} history_item_ids, {later_count} later_target_ids"
            )
        texts = [completion_text(c) for c in completions]
        rewards = np.zeros(len(texts), dtype=np.float64)
        window = self.encoder.max_tokens()
        fits = np.array([n <= window for n in self.encoder.token_counts(texts)], dtype=bool)
        if fits.any():
            rows = np.flatnonzero(fits)
            queries = self.encoder.encode([texts[i] for i in rows])
            targets = [
                [target_item_id[i], *(later_target_ids[i] if later_target_ids is not None else ())] for i in rows
            ]
            # One ranking row per (completion, target): the query repeated once per target.
            repeats = np.array([len(t) for t in targets])
            owner = np.repeat(np.arange(len(rows)), repeats)
            ranks = self.ranks(
                queries[owner],
                [item for row_targets in targets for item in row_targets],
                [list(history_item_ids[rows[i]]) for i in owner],
            )
            per_target = reward_from_ranks(ranks, self.kind, len(self.index))
            rewards[rows] = np.bincount(owner, weights=per_target, minlength=len(rows)) / repeats
        return rewards.tolist()

    def ranks(
        self, queries: np.ndarray, targets: Sequence[str], exclude: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Full-catalogue rank of each target (history excluded), by the index's exact scores."""
        return self.index.target_ranks(queries, targets, exclude)


def reward_from_ranks(ranks: np.ndarray, kind: RewardKind, num_items: int) -> np.ndarray:
    """NDCG with no cutoff (one relevant item: 1/log2(rank+1)), reciprocal rank, or log-rank
    1 - ln(rank)/ln(num_items) (1 at rank 1, 0 at the last rank)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if kind == "ndcg":
        return 1.0 / np.log2(ranks + 1.0)
    if kind == "mrr":
        return 1.0 / ranks
    return 1.0 - np.log(ranks) / np.log(max(num_items, 2))


def completion_text(completion: Any) -> str:
    """The profile text of a completion: a plain string, or TRL's conversational form (a list of
    messages whose last one is the assistant's)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
    raise TypeError(
        "completion must be a string or a list of {'role', 'content'} messages, "
        f"got {type(completion).__name__}: {completion!r:.80}"
    )


def on_finished_profiles(reward: RankReward, tokenizer: Any, stop_ids: Sequence[int]) -> Callable[..., list[float]]:
    """`reward` for TRL's trainers, scoring each completion's finished profile: TRL's completion
    ids read as our rollouts read theirs (lpt_core.generation.base.profile_from_tokens: cut at the
    first of `stop_ids`, decoded, finished), so every trainer scores the text a person would read."""
    stop_set = set(stop_ids)

    def finished_reward(
        prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Sequence[int]], **columns: Any
    ) -> list[float]:
        texts = [profile_from_tokens(tokenizer, ids, stop_set).text for ids in completion_ids]
        return reward(prompts, texts, **columns)

    finished_reward.__name__ = reward.__name__
    return finished_reward
