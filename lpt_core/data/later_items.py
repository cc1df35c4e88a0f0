"""A user's items after a window's target, read from the user's windows themselves: the targets of
the later windows, or the next interactions those windows cover. The RL reward averages over them
(training.rl.reward_targets, lpt_core.training.examples) and the evaluation report ranks a test
window's profile against them (evaluation.targets_per_window, lpt_core.evaluation).

A leaf module that reads rows through polars' methods only: the trainers that import it run where
polars is not installed (the GPU check, bench/speed/paper_scale.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

Following = Callable[[dict], list[str]]


def later_window_targets(rows: pl.DataFrame) -> Following:
    """row -> the targets of the same user's later windows, in window order."""
    targets_by_user: dict[str, list[tuple[int, str]]] = {}
    for user, window, target in rows.select("user_id", "window", "target_item_id").iter_rows():
        targets_by_user.setdefault(user, []).append((window, target))
    for windows in targets_by_user.values():
        windows.sort()
    return lambda row: [t for w, t in targets_by_user[row["user_id"]] if w > row["window"]]


def next_interactions(rows: pl.DataFrame) -> Following:
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


def later_targets(row: dict, following: Following, count: int) -> list[str]:
    """The first `count` of following(row), less any item already in the row's history or target,
    and repeats: rankings exclude the history, so such an item could not be ranked. (Fewer than
    `count` then, rather than reaching further ahead: the next `count` interactions are what a
    window stands for.)"""
    if count < 1:
        return []
    later: list[str] = []
    seen = {*row["history_item_ids"], row["target_item_id"]}
    for item in following(row)[:count]:
        if item not in seen:
            later.append(item)
            seen.add(item)
    return later
