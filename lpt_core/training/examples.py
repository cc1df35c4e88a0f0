"""The RL phase's examples: a train window's prompt, its targets and the history the reward leaves
out, and the reward columns every RL algorithm passes to the rank reward. A leaf module, so that
the algorithms (lpt_core.training.rebel, trl_trainers, best_of_n) and their runner
(lpt_core.training.rl) all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class RLExample:
    """One train window: the chat-formatted prompt, the next item, the history to leave out, and
    the targets of the user's later windows that the reward also averages over (training.rl.
    reward_targets; none for the method's next-item reward)."""

    prompt: str
    target_item_id: str
    history_item_ids: list[str]
    later_target_ids: tuple[str, ...] = ()


def rl_examples(rows: pl.DataFrame, reward_targets: int = 1) -> list[RLExample]:
    """The RL examples of user_examples rows (with a "prompt" column), in row order.

    Each row's later targets are the targets of the same user's next `reward_targets - 1` windows
    (fewer near the user's last window), leaving out any item already in the row's history or
    targets: the reward ranks with the history excluded, so such an item could not be ranked.
    """
    targets_by_user: dict[str, list[tuple[int, str]]] = {}
    for user, window, target in rows.select("user_id", "window", "target_item_id").iter_rows():
        targets_by_user.setdefault(user, []).append((window, target))
    for windows in targets_by_user.values():
        windows.sort()
    examples = []
    for row in rows.iter_rows(named=True):
        history = list(row["history_item_ids"])
        later: list[str] = []
        if reward_targets > 1:
            following = [t for w, t in targets_by_user[row["user_id"]] if w > row["window"]][: reward_targets - 1]
            seen = {*history, row["target_item_id"]}
            for item in following:
                if item not in seen:
                    later.append(item)
                    seen.add(item)
        examples.append(RLExample(row["prompt"], row["target_item_id"], history, tuple(later)))
    return examples


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
