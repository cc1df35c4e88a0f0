"""How a history-reading recommender is ranked: the same rule as every other evaluated method.

A recommender here is anything with `.scores(histories) -> (rows x n_items)` over catalogue
positions. Its targets are ranked by lpt_core.retrieval.rank_targets with the row's history items
excluded, so the tie rule and the exclusion are identical to the text and popularity methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from lpt_core.metrics import metric_cutoff, summarise
from lpt_core.retrieval import ranks_in_chunks


class HistoryScorer(Protocol):
    """Scores every catalogue item for each history (histories are lists of catalogue positions)."""

    n_items: int

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray: ...


def target_ranks(
    scorer: HistoryScorer, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> np.ndarray:
    """1-based rank of each row's target among all catalogue items, its history left out,
    scored in chunks of rows so memory stays near retrieval.RANKING_CHUNK_ELEMENTS."""
    histories = [np.asarray(h, dtype=np.int64) for h in histories]
    targets = np.asarray(targets, dtype=np.int64)
    if len(histories) != len(targets):
        raise ValueError(f"{len(histories)} histories for {len(targets)} targets")
    return ranks_in_chunks(lambda rows: scorer.scores(histories[rows]), targets, histories, scorer.n_items)


def validation_metric(
    scorer: HistoryScorer, histories: Sequence[Sequence[int]], targets: Sequence[int], metric: str
) -> float:
    """Mean `metric` over rows, ranked exactly as at evaluation."""
    return summarise(target_ranks(scorer, histories, targets), [metric_cutoff(metric)])[metric]
