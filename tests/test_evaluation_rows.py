"""The report's rows: every evaluation window once per target (evaluation.targets_per_window), and
each distinct query text encoded once however many rows share it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from builders import example_row, examples_table
from sentence_transformers import SentenceTransformer

from lpt_core.baselines import encode_rows
from lpt_core.config import EvaluationConfig
from lpt_core.evaluation import evaluation_rows
from lpt_core.retrieval import TextEncoder


def user_examples() -> pl.DataFrame:
    # u's interactions a b c d e f g, windows of 3 with stride 2, each target the next item; v is a
    # train user, left out of the test rows.
    windows = [(["a", "b", "c"], "d"), (["c", "d", "e"], "f"), (["e", "f", "a"], "g")]
    return examples_table(
        *[example_row("u", "test", history, target, window=w) for w, (history, target) in enumerate(windows)],
        example_row("v", "train", ["x", "y"], "z"),
    )


def test_one_target_per_window_is_the_papers_next_item_protocol():
    rows = evaluation_rows(user_examples(), EvaluationConfig(targets_per_window=1))

    assert rows.equals(user_examples().filter(pl.col("split") == "test"))


def test_each_window_is_ranked_against_its_next_interactions_with_its_own_history():
    rows = evaluation_rows(user_examples(), EvaluationConfig(targets_per_window=3))

    # Window 0: its next item d, then e and f; window 1: f, then g, where u's interactions end, so
    # window 2 keeps its next item g alone.
    assert rows.select("window", "target_item_id").rows() == [(0, "d"), (0, "e"), (0, "f"), (1, "f"), (1, "g"), (2, "g")]
    assert rows["history_item_ids"].to_list() == [["a", "b", "c"]] * 3 + [["c", "d", "e"]] * 2 + [["e", "f", "a"]]
    assert set(rows["user_id"]) == {"u"}


class CountingEncoder(TextEncoder):
    """The real encoder, keeping the texts of each call."""

    def __init__(self, model: SentenceTransformer):
        super().__init__(model)
        self.calls: list[list[str]] = []

    def encode(self, texts, progress=None) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode(texts, progress)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder) -> CountingEncoder:
    return CountingEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"))


def test_rows_sharing_a_text_share_one_encoding(encoder):
    texts = ["likes war films", "likes comedies", "likes war films", "likes war films"]

    embeddings = encode_rows(encoder, texts)

    assert encoder.calls[-1] == ["likes war films", "likes comedies"]
    np.testing.assert_allclose(embeddings, encoder.encode(texts), atol=1e-5)
