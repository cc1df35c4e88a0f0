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
    history or targets: the reward ranks with the history excluded, so it could not be ranked.
    """
    following = _window_targets(rows) if targets_from == "later_windows" else _interactions(rows)
    examples = []
    for row in rows.iter_rows(named=True):
        history = list(row["history_item_ids"])
        later: list[str] = []
        if reward_targets > 1:
            seen = {*history, row["target_item_id"]}
            for item in following(row)[: reward_targets - 1]:
                if item not in seen:
                    later.append(item)
                    seen.add(item)
        examples.append(RLExample(row["prompt"], row["target_item_id"], history, tuple(later)))
    return examples


def _window_targets(rows: pl.DataFrame) -> Callable[[dict], list[str]]:
    """row -> the targets of the same user's later windows, in window order."""
    targets_by_user: dict[str, list[tuple[int, str]]] = {}
    for user, window, target in rows.select("user_id", "window", "target_item_id").iter_rows():
        targets_by_user.setdefault(user, []).append((window, target))
    for windows in targets_by_user.values():
        windows.sort()
    return lambda row: [t for w, t in targets_by_user[row["user_id"]] if w > row["window"]]


def _interactions(rows: pl.DataFrame) -> Callable[[dict], list[str]]:
    """row -> the user's items after the row's target, in time order, as far as the user's windows
    cover them: each window's history then its target, windows in order (sliding windows overlap,
    so together they hold every interaction from the first history to the last target). An item
    the user consumed twice counts once, at its first time."""
    sequences: dict[str, dict[str, None]] = {}
    ordered = rows.select("user_id", "window", "history_item_ids", "target_item_id").sort("user_id", "window")
    for user, _, history, target in ordered.iter_rows():
        sequence = sequences.setdefault(user, {})
        sequence.update(dict.fromkeys([*history, target]))
    positions = {user: {item: i for i, item in enumerate(sequence)} for user, sequence in sequences.items()}
    items = {user: list(sequence) for user, sequence in sequences.items()}

    def after_target(row: dict) -> list[str]:
        # After the latest of the window's items: an item seen twice keeps its first position, so
        # the target alone could point back before the window.
        user, position = row["user_id"], positions[row["user_id"]]
        return items[user][max(position[item] for item in [*row["history_item_ids"], row["target_item_id"]]) + 1 :]

    return after_target


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
