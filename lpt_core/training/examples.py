"""The RL phase's examples: a train window's prompt, its targets and the history the reward leaves
out, and the reward columns every RL algorithm passes to the rank reward. A leaf module, so that
the algorithms (lpt_core.training.rebel, trl_trainers, best_of_n) and their runner
(lpt_core.training.rl) all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpt_core.config import RewardTargetsFrom
from lpt_core.data.later_items import later_targets, later_window_targets, next_interactions

if TYPE_CHECKING:  # rows are polars frames, read through their methods: the trainers that import
    # RLExample run where polars is not installed (the GPU check, bench/speed/paper_scale.py)
    import polars as pl


@dataclass(frozen=True)
class RLExample:
    """One train window: the chat-formatted prompt, the next item, the history to leave out, and
    the user's later items that the reward also averages over (training.rl.reward_targets and
    reward_targets_from; none for the method's next-item reward)."""

    prompt: str
    target_item_id: str
    history_item_ids: list[str]
    later_target_ids: tuple[str, ...] = ()


def rl_examples(rows: pl.DataFrame, reward_targets: int = 1, targets_from: RewardTargetsFrom = "later_windows") -> list[RLExample]:
    """The RL examples of user_examples rows (with a "prompt" column), in row order.

    Each row's later targets are the same user's next `reward_targets - 1` items after its target
    (fewer near the user's last window): the targets of the next windows, or the next interactions
    that the user's windows cover (`targets_from`), leaving out any item already in the row's
    history or targets (lpt_core.data.later_items).
    """
    following = later_window_targets(rows) if targets_from == "later_windows" else next_interactions(rows)
    return [
        RLExample(row["prompt"], row["target_item_id"], list(row["history_item_ids"]),
                  tuple(later_targets(row, following, reward_targets - 1)))
        for row in rows.iter_rows(named=True)
    ]


def rewards_of(reward: Callable[..., list[float]], completions: Sequence[Any], examples: Sequence[RLExample]) -> list[float]:
    """The reward of completions[i] as a profile for examples[i], from `reward` (a RankReward, or
    any function with TRL's reward signature)."""
    return reward([example.prompt for example in examples], completions, **reward_columns(examples))


def reward_columns(examples: Sequence[RLExample]) -> dict[str, list]:
    """The columns RankReward reads, per example (TRL passes them from its dataset)."""
    return {
        "target_item_id": [example.target_item_id for example in examples],
        "history_item_ids": [list(example.history_item_ids) for example in examples],
        "later_target_ids": [list(example.later_target_ids) for example in examples],
    }
