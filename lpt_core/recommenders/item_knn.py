"""Item-to-item collaborative filtering: co-occurrence / cosine item-kNN over train users.

Two items are similar when the same train users interacted with both. An unseen user is scored
from their history alone: item j scores the sum over history items h of sim(h, j), keeping only
each item's k most similar neighbours (k is tuned on the validation users). Items similar to no
history item score 0 and tie; the shared ranking rule gives them their expected rank.

Similarities, with C = X^T X for the binary train users x items matrix X:
- "cooccurrence": C[i, j], the number of train users who have both;
- "cosine": C[i, j] / sqrt(C[i, i] * C[j, j]), which stops blockbusters neighbouring everything.

Built with dense matrix products over chunks of users and blocks of items (numpy/BLAS, no new
dependency): memory stays near retrieval.RANKING_CHUNK_ELEMENTS, time grows as users x items^2,
which is seconds at MovieLens scale and fine up to some tens of thousands of items.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lpt_core.atomic import atomic_dir
from lpt_core.retrieval import chunk_rows

Similarity = Literal["cosine", "cooccurrence"]
SIMILARITIES: tuple[Similarity, ...] = ("cosine", "cooccurrence")
NEIGHBOURS_FILE = "neighbours.npz"
SETTINGS_FILE = "item_knn.json"


@dataclass
class ItemKNN:
    """Each item's k nearest items (catalogue positions) and their similarities."""

    neighbours: np.ndarray  # (n_items, k) int64 positions
    weights: np.ndarray  # (n_items, k) float32 similarities, 0 where an item has fewer neighbours
    similarity: Similarity

    @property
    def n_items(self) -> int:
        return int(self.neighbours.shape[0])

    @classmethod
    def fit(
        cls,
        train_sequences: Sequence[Sequence[int]],
        n_items: int,
        k: int,
        similarity: Similarity = "cosine",
    ) -> ItemKNN:
        """Neighbours from the train users' sequences (catalogue positions; order is ignored)."""
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if n_items < 2 or k < 1:
            raise ValueError(f"need n_items >= 2 and k >= 1, got n_items={n_items}, k={k}")
        users = _binary_rows(train_sequences, n_items)
        k = min(k, n_items - 1)
        item_users = np.zeros(n_items, dtype=np.float32)
        for chunk in users:
            item_users += chunk.sum(axis=0)
        neighbours = np.empty((n_items, k), dtype=np.int64)
        weights = np.empty((n_items, k), dtype=np.float32)
        block = chunk_rows(n_items)
        for start in range(0, n_items, block):
            rows = slice(start, min(start + block, n_items))
            counts = sum(chunk[:, rows].T @ chunk for chunk in users)
            if similarity == "cosine":
                norms = np.sqrt(np.outer(item_users[rows], item_users))
                counts = np.divide(counts, norms, out=np.zeros_like(counts), where=norms > 0)
            counts[np.arange(rows.stop - start), np.arange(start, rows.stop)] = -np.inf  # not itself
            best = np.argpartition(-counts, k - 1, axis=1)[:, :k]
            neighbours[rows] = best
            weights[rows] = np.maximum(np.take_along_axis(counts, best, axis=1), 0.0)
        return cls(neighbours, weights, similarity)

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(rows x n_items) scores: each row sums its distinct history items' neighbour weights."""
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        distinct = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
        _check_positions(distinct, self.n_items)
        row_of = np.repeat(np.arange(len(histories)), [len(h) for h in distinct])
        items = np.concatenate(distinct) if distinct else np.empty(0, dtype=np.int64)
        rows = np.repeat(row_of, self.neighbours.shape[1])
        np.add.at(out, (rows, self.neighbours[items].ravel()), self.weights[items].ravel())
        return out

    def save(self, folder: Path) -> Path:
        """Neighbours and settings, written together: the folder appears only when both are done."""
        with atomic_dir(folder) as tmp:
            np.savez(tmp / NEIGHBOURS_FILE, neighbours=self.neighbours, weights=self.weights)
            settings = {"similarity": self.similarity, "k": int(self.neighbours.shape[1]), "n_items": self.n_items}
            (tmp / SETTINGS_FILE).write_text(json.dumps(settings), encoding="utf-8")
        return Path(folder)

    @classmethod
    def load(cls, folder: Path) -> ItemKNN:
        folder = Path(folder)
        for name in (NEIGHBOURS_FILE, SETTINGS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing (not an ItemKNN folder?)")
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        with np.load(folder / NEIGHBOURS_FILE) as arrays:
            return cls(arrays["neighbours"], arrays["weights"], settings["similarity"])


def _binary_rows(sequences: Sequence[Sequence[int]], n_items: int) -> list[np.ndarray]:
    """The users x items 0/1 matrix in dense chunks of users (a repeated item counts once)."""
    positions = [np.asarray(s, dtype=np.int64) for s in sequences]
    _check_positions(positions, n_items)
    step = chunk_rows(n_items)
    chunks = []
    for start in range(0, len(positions), step):
        part = positions[start : start + step]
        matrix = np.zeros((len(part), n_items), dtype=np.float32)
        matrix[np.repeat(np.arange(len(part)), [len(p) for p in part]), np.concatenate(part)] = 1.0
        chunks.append(matrix)
    return chunks


def _check_positions(rows: Sequence[np.ndarray], n_items: int) -> None:
    for row, positions in enumerate(rows):
        if positions.size and (positions.min() < 0 or positions.max() >= n_items):
            raise ValueError(f"row {row}: item positions must lie in [0, {n_items}), got {positions.tolist()}")
