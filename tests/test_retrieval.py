"""Full-catalogue ranking: exact ranks, history masking, tie rule, HNSW quality, persistence, encoder."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from lpt_core import retrieval
from lpt_core.retrieval import ItemIndex, TextEncoder, recall_vs_exact


def random_catalogue(n_items: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"item{i}" for i in range(n_items)], rng.normal(size=(n_items, dim)).astype(np.float32)


def brute_force_ranks(
    queries: np.ndarray, vectors: np.ndarray, targets: list[int], exclude: list[list[int]]
) -> np.ndarray:
    """The definition, row by row: expected rank among the non-excluded items."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ranks = []
    for query, target, excluded in zip(queries, targets, exclude):
        scores = unit @ query
        kept = np.ones(len(scores), dtype=bool)
        kept[excluded] = False
        kept[target] = False
        higher = np.sum(scores[kept] > scores[target])
        tied = np.sum(scores[kept] == scores[target])
        ranks.append(1 + higher + tied / 2)
    return np.array(ranks)


def test_target_ranks_match_brute_force_with_excluded_items_above_target(monkeypatch):
    ids, vectors = random_catalogue(300, 16)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    # A tiny chunk budget forces many chunks, so chunk boundaries are exercised too.
    monkeypatch.setattr(retrieval, "RANKING_CHUNK_ELEMENTS", 7 * 300)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    targets, exclude = [], []
    for query in queries:
        order = np.argsort(-(unit @ query))
        targets.append(int(order[20]))
        # Half the history scores above the target (these must not count), half below.
        exclude.append([int(p) for p in order[[0, 3, 7, 50, 120]]])
    index = ItemIndex.build(ids, vectors)
    ranks = index.target_ranks(
        queries, [ids[t] for t in targets], [[ids[p] for p in row] for row in exclude]
    )
    np.testing.assert_allclose(ranks, brute_force_ranks(queries, vectors, targets, exclude))
    assert np.all(ranks == 21 - 3)  # 20 items above the target, 3 of them history


def test_ties_take_the_expected_rank():
    ids, vectors = random_catalogue(50, 8)
    vectors[[1, 2, 3]] = vectors[0]  # four items with identical embeddings
    index = ItemIndex.build(ids, vectors)
    query = vectors[:1] / np.linalg.norm(vectors[0])  # the four tie at the top score
    assert index.target_ranks(query, ["item0"], [[]])[0] == 1 + 3 / 2
    assert index.target_ranks(query, ["item0"], [["item1"]])[0] == 1 + 2 / 2


def test_duplicate_history_items_are_removed_once():
    ids, vectors = random_catalogue(100, 8)
    index = ItemIndex.build(ids, vectors)
    query = vectors[:1]
    single = index.target_ranks(query, ["item5"], [["item0"]])
    doubled = index.target_ranks(query, ["item5"], [["item0", "item0"]])
    assert single[0] == doubled[0]


def test_top_k_never_returns_history_and_matches_exact_order():
    ids, vectors = random_catalogue(400, 16)
    index = ItemIndex.build(ids, vectors)
    rng = np.random.default_rng(2)
    queries = rng.normal(size=(25, 16)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    # Each history is (part of) the row's own exact top list: the worst case for filtering.
    exclude = [[ids[p] for p in np.argsort(-(unit @ q))[: 1 + row % 6]] for row, q in enumerate(queries)]
    top_ids, top_scores = index.top_k(queries, 10, exclude)
    assert top_ids.shape == top_scores.shape == (25, 10)
    for row, query in enumerate(queries):
        assert not set(top_ids[row]) & set(exclude[row])
        order = [ids[p] for p in np.argsort(-(unit @ query)) if ids[p] not in exclude[row]][:10]
        assert top_ids[row].tolist() == order
        assert np.all(np.diff(top_scores[row]) <= 0)


def test_hnsw_recall_against_exact_search():
    ids, vectors = random_catalogue(3000, 32)
    queries = np.random.default_rng(3).normal(size=(100, 32)).astype(np.float32)
    exact = ItemIndex.build(ids, vectors, kind="flat")
    approx = ItemIndex.build(ids, vectors, kind="hnsw", hnsw_m=16, ef_search=64)
    assert recall_vs_exact(approx, exact, queries, k=10) > 0.95
    # Ranks stay exact whatever the index kind.
    np.testing.assert_array_equal(
        approx.target_ranks(queries, ids[:100], [[]] * 100),
        exact.target_ranks(queries, ids[:100], [[]] * 100),
    )


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    ids, vectors = random_catalogue(200, 8)
    index = ItemIndex.build(ids, vectors, kind=kind, ef_search=40)
    queries = np.random.default_rng(4).normal(size=(5, 8)).astype(np.float32)
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    assert loaded.kind == kind
    assert loaded.item_ids.tolist() == ids
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    history = [["item1"]] * 5
    assert loaded.top_k(queries, 5, history)[0].tolist() == index.top_k(queries, 5, history)[0].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary folder left behind


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_unnormalised_vectors_are_kept_and_scored_by_inner_product(tmp_path, kind):
    ids, vectors = random_catalogue(200, 8)
    vectors *= np.random.default_rng(5).uniform(0.1, 10.0, size=(200, 1)).astype(np.float32)
    index = ItemIndex.build(ids, vectors, kind=kind, normalize=False)
    np.testing.assert_array_equal(index.vectors, vectors)
    queries = np.random.default_rng(6).normal(size=(5, 8)).astype(np.float32)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1)
    # Ranks are exact inner-product ranks (the item's length counts), history removed.
    targets = [ids[row[3]] for row in order]
    history = [[ids[row[0]]] for row in order]
    np.testing.assert_array_equal(index.target_ranks(queries, targets, history), 3.0)
    top_ids, top_scores = index.top_k(queries, 3, history)
    assert top_ids.tolist() == [[ids[p] for p in row[1:4]] for row in order]
    np.testing.assert_allclose(top_scores, np.take_along_axis(scores, order[:, 1:4], axis=1), rtol=1e-5)
    # With a bias (exact search) the score is inner product plus bias; a save keeps it all.
    biased = ItemIndex.build(ids, vectors, kind=kind, normalize=False, bias=np.arange(200, dtype=np.float32))
    biased.save(tmp_path / "biased")
    loaded = ItemIndex.load(tmp_path / "biased")
    np.testing.assert_array_equal(loaded.vectors, vectors)
    best = np.argmax(scores + np.arange(200), axis=1)
    assert loaded.top_k(queries, 1, [[]] * 5)[0][:, 0].tolist() == [ids[p] for p in best]


def test_unknown_ids_and_bad_arguments_are_named():
    ids, vectors = random_catalogue(20, 4)
    index = ItemIndex.build(ids, vectors)
    with pytest.raises(KeyError, match="nope"):
        index.positions(["item1", "nope"])
    with pytest.raises(ValueError, match="target item is also in the items to exclude"):
        index.target_ranks(vectors[:1], ["item3"], [["item3"]])
    with pytest.raises(ValueError, match="repeated"):
        ItemIndex.build(["a", "a"], vectors[:2])
    with pytest.raises(ValueError, match="does not fit"):
        index.top_k(vectors[:1], 20, [["item0"]])


@pytest.fixture(scope="module")
def tiny_encoder(tiny_encoder_folder) -> TextEncoder:
    return TextEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"), batch_size=3)


def test_encoder_returns_normalised_float32_rows_and_reports_progress(tiny_encoder):
    texts = ["the user likes dark thrillers", "Title: Toy Story (1995)", "a", "comedy", "war film"]
    seen = []
    embeddings = tiny_encoder.encode(texts, progress=lambda done, total: seen.append((done, total)))
    assert embeddings.dtype == np.float32 and embeddings.shape == (5, tiny_encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert seen == [(3, 5), (5, 5)]
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dimension)


def test_token_counts_find_texts_over_the_window(tiny_encoder):
    window = tiny_encoder.max_tokens()
    short, long = "the user likes drama", " ".join(["movie"] * (window + 10))
    counts = tiny_encoder.token_counts([short, long])
    assert counts[0] == 4 + 2  # four words plus [CLS] and [SEP]
    assert counts[1] == window + 12 > window
