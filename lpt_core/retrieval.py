"""Text encoding and full-catalogue retrieval: the recommender decoder's side of the method.

Every method (profiles, history text, last item, random, popularity) is scored the same way: the
target's rank among ALL catalogue items, with the user's history items taken out of the ranking.
Ranks are exact, computed from the full score matrix in chunks of users, so that a 100k-item
catalogue never needs a users x items matrix in memory at once. faiss serves top-K lists: an exact
inner-product index (IndexFlatIP) by default, HNSW for catalogues too big for exact search.

Tie rule, used everywhere: a target tied with other items gets the EXPECTED rank under random
tie-breaking, 1 + #higher + #tied/2. The pessimistic rule (1 + #higher + #tied) would punish the
popularity baseline, whose scores tie in large groups, for the scoring rule rather than for what it
predicts; an optimistic one would flatter it. Embedding scores almost never tie, so for them both
rules agree. Ranks are therefore float64 (multiples of 0.5).

An index may carry a per-item bias (learned by the contrastive phase, lpt_core.training): an item's
score is then cos(query, item) + bias[item], in ranks and top-K lists alike. Biased top-K lists
are computed exactly from the score matrix, since faiss searches inner products only. An index of
an item-side head (lpt_core.training.item_head) holds unnormalised item vectors: its score is the
inner product query . vector + bias, computed by the same code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer

from lpt_core.atomic import atomic_dir

TIE_RULE = "expected rank under random tie-breaking: 1 + #higher + #tied/2"
IndexKind = Literal["flat", "hnsw"]
INDEX_FILE = "index.faiss"
IDS_FILE = "item_ids.json"
BIAS_FILE = "item_bias.npy"
# Scores held at once while ranking (chunk of users x catalogue): 2**24 float32 = 64 MiB.
RANKING_CHUNK_ELEMENTS = 2**24


class TextEncoder:
    """A sentence-transformers model that returns float32, L2-normalised embeddings."""

    def __init__(self, model: SentenceTransformer, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(
        self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Embed `texts` (one row each); `progress(done, total)` is called after every batch."""
        texts = list(texts)
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            chunks.append(
                self.model.encode(
                    batch,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            )
            if progress is not None:
                progress(start + len(batch), len(texts))
        if not chunks:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)

    def max_tokens(self) -> int:
        """The encoder's window: texts with more tokens than this are truncated by encode()."""
        return int(self.model.max_seq_length)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, special tokens included, without truncation (to find overlong texts)."""
        counts: list[int] = []
        texts = list(texts)
        for start in range(0, len(texts), 1024):
            encoded = self.model.tokenizer(
                texts[start : start + 1024],
                add_special_tokens=True,
                truncation=False,
                verbose=False,  # overlong texts are what we are counting, not a mistake
            )
            counts.extend(len(ids) for ids in encoded["input_ids"])
        return counts


def rank_targets(
    scores: np.ndarray, target_positions: np.ndarray, exclude_positions: Sequence[np.ndarray]
) -> np.ndarray:
    """1-based rank of each row's target among its scores, excluded positions left out.

    `scores` is (rows x items), or (1 x items) when every row shares the same scores (popularity).
    Ties take the expected rank under random tie-breaking (see the module docstring).
    """
    rows = len(target_positions)
    if len(exclude_positions) != rows:
        raise ValueError(f"exclude has {len(exclude_positions)} rows, targets have {rows}")
    scores = np.asarray(scores)
    shared = scores.shape[0] != rows
    row_of_scores = np.zeros(rows, dtype=np.int64) if shared else np.arange(rows)
    target_scores = scores[row_of_scores, target_positions][:, None]
    # (1 x items) scores broadcast against (rows x 1) targets: counts come out per row either way.
    higher = np.count_nonzero(scores > target_scores, axis=1)
    tied = np.count_nonzero(scores == target_scores, axis=1) - 1  # the target ties with itself

    # A history may hold an item twice (duplicate interactions are kept): remove it once.
    unique_excluded = [np.unique(np.asarray(p, dtype=np.int64)) for p in exclude_positions]
    excluded_rows = np.repeat(np.arange(rows), [len(p) for p in unique_excluded])
    if excluded_rows.size:
        excluded_cols = np.concatenate(unique_excluded)
        clashes = excluded_rows[excluded_cols == target_positions[excluded_rows]]
        if clashes.size:
            raise ValueError(f"row {int(clashes[0])}: the target item is also in the items to exclude")
        excluded_scores = scores[row_of_scores[excluded_rows], excluded_cols]
        own_target = target_scores[excluded_rows, 0]
        higher = higher - np.bincount(excluded_rows[excluded_scores > own_target], minlength=rows)
        tied = tied - np.bincount(excluded_rows[excluded_scores == own_target], minlength=rows)
    return 1.0 + higher + tied / 2.0


def chunk_rows(n_items: int) -> int:
    """How many users to rank at once so a chunk's score matrix stays near the memory budget."""
    return max(1, RANKING_CHUNK_ELEMENTS // max(1, n_items))


def ranks_in_chunks(
    scores_of: Callable[[slice], np.ndarray],
    target_positions: np.ndarray,
    exclude_positions: Sequence[np.ndarray],
    n_items: int,
) -> np.ndarray:
    """rank_targets over all rows, a chunk of rows at a time (chunk_rows), so the score matrix of
    a whole split is never held at once. `scores_of(rows)` gives the scores of the rows in the
    slice: (rows x n_items), or (1 x n_items) shared by them."""
    ranks = np.empty(len(target_positions), dtype=np.float64)
    step = chunk_rows(n_items)
    for start in range(0, len(ranks), step):
        rows = slice(start, min(start + step, len(ranks)))
        ranks[rows] = rank_targets(scores_of(rows), target_positions[rows], exclude_positions[rows])
    return ranks


@dataclass
class ItemIndex:
    """The catalogue's item embeddings in catalogue order, with a faiss index over them, and an
    optional per-item bias added to every score."""

    item_ids: np.ndarray
    index: faiss.Index
    kind: IndexKind
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._position = {item_id: pos for pos, item_id in enumerate(self.item_ids.tolist())}
        if len(self._position) != len(self.item_ids):
            repeated = [i for i, n in Counter(self.item_ids.tolist()).items() if n > 1]
            raise ValueError(f"item_ids must be unique; repeated: {sorted(repeated)[:10]}")
        if self.index.ntotal != len(self.item_ids):
            raise ValueError(f"index holds {self.index.ntotal} vectors for {len(self.item_ids)} ids")
        self.vectors = _stored_vectors(self.index)
        if self.bias is not None:
            self.bias = np.asarray(self.bias, dtype=np.float32)
            if self.bias.shape != (len(self.item_ids),):
                raise ValueError(f"bias must have shape ({len(self.item_ids)},), got {self.bias.shape}")
            if not np.all(np.isfinite(self.bias)):
                raise ValueError("bias contains NaN or infinite values")

    @classmethod
    def build(
        cls,
        item_ids: Sequence[str],
        embeddings: np.ndarray,
        kind: IndexKind = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        bias: np.ndarray | None = None,
        normalize: bool = True,
    ) -> ItemIndex:
        """Index `embeddings` (one row per id); rows are L2-normalised so inner product = cosine.

        `bias` (one value per id, optional) is added to every score of its item. normalize=False
        keeps the rows as given, for item vectors whose length is part of the score (the item-side
        head, lpt_core.training.item_head): the score is then the plain inner product."""
        embeddings = np.array(embeddings, dtype=np.float32, order="C", copy=True)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(item_ids):
            raise ValueError(
                f"embeddings must be (len(item_ids)={len(item_ids)}, dim), got {embeddings.shape}"
            )
        if normalize:
            faiss.normalize_L2(embeddings)
        dim = embeddings.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"kind must be 'flat' or 'hnsw', got {kind!r}")
        index.add(embeddings)
        return cls(np.asarray(list(item_ids), dtype=str), index, kind, bias)

    def save(self, folder: Path) -> Path:
        """Write the faiss index and the ids together; the folder appears only when both are done."""
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            payload = {"kind": self.kind, "item_ids": self.item_ids.tolist()}
            (tmp / IDS_FILE).write_text(json.dumps(payload), encoding="utf-8")
            if self.bias is not None:
                np.save(tmp / BIAS_FILE, self.bias)
        return Path(folder)

    @classmethod
    def load(cls, folder: Path) -> ItemIndex:
        folder = Path(folder)
        for name in (INDEX_FILE, IDS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing (not an ItemIndex folder?)")
        payload = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / INDEX_FILE))
        bias = np.load(folder / BIAS_FILE) if (folder / BIAS_FILE).is_file() else None
        return cls(np.asarray(payload["item_ids"], dtype=str), index, payload["kind"], bias)

    def __len__(self) -> int:
        return len(self.item_ids)

    def positions(self, item_ids: Sequence[str]) -> np.ndarray:
        """Catalogue positions of `item_ids`; a KeyError names every id not in the catalogue."""
        try:
            return np.fromiter((self._position[i] for i in item_ids), dtype=np.int64)
        except KeyError:
            unknown = sorted({i for i in item_ids if i not in self._position})
            raise KeyError(
                f"{len(unknown)} item id(s) not in the catalogue of {len(self)} items: {unknown[:10]}"
            ) from None

    def target_ranks(
        self, queries: np.ndarray, targets: Sequence[str], exclude: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Exact 1-based rank of each row's target among all items, exclude[i] removed from row i.

        Computed from the exact scores (cosine, plus the bias if any) whatever the index kind, in
        chunks of users.
        """
        queries = self._check_queries(queries, len(targets), len(exclude))
        return ranks_in_chunks(
            lambda rows: self._exact_scores(queries[rows]),
            self.positions(targets),
            [self.positions(items) for items in exclude],
            len(self),
        )

    def top_k(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best items per query (ids, scores), never one of the row's excluded items."""
        queries = self._check_queries(queries, len(exclude), len(exclude))
        exclude_positions = [set(self.positions(items).tolist()) for items in exclude]
        widest = max((len(p) for p in exclude_positions), default=0)
        if k < 1 or k + widest > len(self):
            raise ValueError(
                f"k={k} with up to {widest} excluded items does not fit a catalogue of {len(self)}"
            )
        found_scores, found_positions = self._search(queries, k + widest)
        ids = np.empty((len(queries), k), dtype=self.item_ids.dtype)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for row, excluded in enumerate(exclude_positions):
            keep = [j for j, p in enumerate(found_positions[row]) if p >= 0 and p not in excluded]
            if len(keep) < k:
                raise RuntimeError(f"row {row}: the index returned only {len(keep)} usable items")
            ids[row] = self.item_ids[found_positions[row, keep[:k]]]
            scores[row] = found_scores[row, keep[:k]]
        return ids, scores

    def exact_scores(self, queries: np.ndarray) -> np.ndarray:
        """Every item's exact score for each query, (queries x items): the vectors' inner product
        (cosine for a normalised index), plus the bias if any. Every rank is computed from these."""
        queries = self._check_queries(queries, len(queries), len(queries))
        return self._exact_scores(queries)

    def _exact_scores(self, queries: np.ndarray) -> np.ndarray:
        scores = queries @ self.vectors.T
        if self.bias is not None:
            scores += self.bias
        return scores

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.bias is not None:
            return self._exact_search(queries, k)
        if self.kind == "hnsw":
            # HNSW returns at most efSearch candidates; widen the beam when more are needed.
            ef = max(int(self.index.hnsw.efSearch), k)
            return self.index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=ef))
        return self.index.search(queries, k)

    def _exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's (scores, positions) layout, best first, from the exact biased scores."""
        found_scores = np.empty((len(queries), k), dtype=np.float32)
        found_positions = np.empty((len(queries), k), dtype=np.int64)
        step = chunk_rows(len(self))
        for start in range(0, len(queries), step):
            rows = slice(start, start + step)
            scores = self._exact_scores(queries[rows])
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(scores, best, axis=1)
            order = np.argsort(-best_scores, axis=1, kind="stable")
            found_positions[rows] = np.take_along_axis(best, order, axis=1)
            found_scores[rows] = np.take_along_axis(best_scores, order, axis=1)
        return found_scores, found_positions

    def _check_queries(self, queries: np.ndarray, rows: int, exclude_rows: int) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise ValueError(f"queries must be (n, {self.index.d}), got {queries.shape}")
        if not np.all(np.isfinite(queries)):
            raise ValueError("queries contain NaN or infinite values")
        if not queries.shape[0] == rows == exclude_rows:
            raise ValueError(
                f"row counts differ: {queries.shape[0]} queries, {rows} targets, {exclude_rows} exclude"
            )
        return queries


def _stored_vectors(index: faiss.Index) -> np.ndarray:
    """A read-only view of the index's float32 vectors (no copy; lives as long as `index`)."""
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    view = faiss.rev_swig_ptr(storage.get_xb(), index.ntotal * index.d)
    vectors = np.asarray(view).reshape(index.ntotal, index.d)
    vectors.flags.writeable = False
    return vectors


def recall_vs_exact(
    approx: ItemIndex, exact: ItemIndex, queries: np.ndarray, k: int
) -> float:
    """Mean share of the exact top-k that the approximate index also returns (no exclusions)."""
    if not np.array_equal(approx.item_ids, exact.item_ids):
        raise ValueError("approx and exact must index the same items in the same order")
    no_history: list[list[str]] = [[] for _ in range(len(queries))]
    approx_ids, _ = approx.top_k(queries, k, no_history)
    exact_ids, _ = exact.top_k(queries, k, no_history)
    overlaps = [len(set(a) & set(e)) / k for a, e in zip(approx_ids.tolist(), exact_ids.tolist())]
    return float(np.mean(overlaps))
