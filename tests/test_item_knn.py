"""Item-kNN recovers planted co-occurrences, keeps k neighbours, ranks like every other method."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lpt_core.baselines import EvalContext, rank_by_scores
from lpt_core.recommenders import target_ranks
from lpt_core.recommenders.item_knn import ItemKNN
from lpt_core.recommenders.sequences import example_positions, train_sequences
from lpt_core.recommenders.tuning import search_item_knn
from lpt_core.retrieval import ItemIndex, rank_targets

N_ITEMS = 30
PAIRS = [(2 * p, 2 * p + 1) for p in range(1, 10)]  # items 2..19 come in planted pairs
BLOCKBUSTER = 0  # every user has it


def planted_users(count: int, seed: int) -> list[list[int]]:
    """Each user: the blockbuster, three planted pairs (both halves), and two random noise items."""
    rng = np.random.default_rng(seed)
    users = []
    for _ in range(count):
        pairs = rng.choice(len(PAIRS), size=3, replace=False)
        items = [BLOCKBUSTER] + [i for p in pairs for i in PAIRS[p]]
        items += rng.choice(np.arange(20, N_ITEMS), size=2, replace=False).tolist()
        users.append([int(i) for i in rng.permutation(items)])
    return users


@pytest.fixture(scope="module")
def users() -> list[list[int]]:
    return planted_users(200, seed=0)


def test_cosine_neighbours_recover_the_planted_pairs(users):
    knn = ItemKNN.fit(users, N_ITEMS, k=3, similarity="cosine")
    for a, b in PAIRS:
        assert knn.neighbours[a][np.argmax(knn.weights[a])] == b
        assert knn.neighbours[b][np.argmax(knn.weights[b])] == a
    # An unseen user holding one half of a pair gets the other half ranked first.
    histories = [[a] for a, _ in PAIRS]
    ranks = target_ranks(knn, histories, [b for _, b in PAIRS])
    np.testing.assert_array_equal(ranks, np.ones(len(PAIRS)))


def test_raw_cooccurrence_favours_the_blockbuster_where_cosine_does_not(users):
    counts = ItemKNN.fit(users, N_ITEMS, k=1, similarity="cooccurrence")
    cosine = ItemKNN.fit(users, N_ITEMS, k=1, similarity="cosine")
    halves = [a for a, _ in PAIRS]
    assert set(counts.neighbours[halves, 0].tolist()) == {BLOCKBUSTER}
    assert cosine.neighbours[halves, 0].tolist() == [b for _, b in PAIRS]


def test_k_neighbours_at_most_and_never_itself(users):
    knn = ItemKNN.fit(users, N_ITEMS, k=4)
    assert knn.neighbours.shape == (N_ITEMS, 4)
    assert not np.any(knn.neighbours == np.arange(N_ITEMS)[:, None])
    scores = knn.scores([[2], [2, 2], [2, 4]])
    assert np.count_nonzero(scores[0]) <= 4
    np.testing.assert_array_equal(scores[0], scores[1])  # a repeated history item counts once
    np.testing.assert_allclose(scores[2], knn.scores([[2]])[0] + knn.scores([[4]])[0])
    # k larger than the catalogue keeps every other item.
    assert ItemKNN.fit(users, N_ITEMS, k=100).neighbours.shape == (N_ITEMS, N_ITEMS - 1)


def test_ranking_excludes_history_exactly_as_rank_targets(users):
    knn = ItemKNN.fit(users, N_ITEMS, k=1)
    histories = [[2, 3, 4], [6, 8], [21, 22, 23]]
    targets = [5, 9, 24]
    expected = rank_targets(knn.scores(histories), np.array(targets), [np.array(h) for h in histories])
    np.testing.assert_array_equal(target_ranks(knn, histories, targets), expected)
    # With k=1, items 2 and 3 (each other's neighbour) tie with item 5 (4's neighbour); they are
    # history, so item 5 ranks first, where it would tie for ranks 1-3 if they were not excluded.
    assert expected[0] == 1.0
    assert rank_targets(knn.scores(histories[:1]), np.array([5]), [np.array([], dtype=np.int64)])[0] == 2.0


def test_save_load_round_trip(users, tmp_path):
    knn = ItemKNN.fit(users, N_ITEMS, k=5, similarity="cooccurrence")
    loaded = ItemKNN.load(knn.save(tmp_path / "knn"))
    assert loaded.similarity == "cooccurrence"
    np.testing.assert_array_equal(loaded.scores([[2, 5]]), knn.scores([[2, 5]]))
    with pytest.raises(FileNotFoundError, match="not an ItemKNN folder"):
        ItemKNN.load(tmp_path)


def test_bad_arguments_are_named(users):
    with pytest.raises(ValueError, match="similarity must be one of"):
        ItemKNN.fit(users, N_ITEMS, k=3, similarity="jaccard")
    with pytest.raises(ValueError, match=r"row 1: item positions must lie in \[0, 30\)"):
        ItemKNN.fit([[1, 2], [3, 30]], N_ITEMS, k=3)


def test_search_picks_the_neighbourhood_that_wins_on_validation(users):
    histories = [[a] for a, _ in PAIRS]
    targets = [b for _, b in PAIRS]
    result = search_item_knn(users, histories, targets, N_ITEMS, neighbours=[1, 5],
                             similarities=["cooccurrence", "cosine"], metric="recall@1")
    assert len(result.trials) == 4
    assert result.settings["similarity"] == "cosine" and result.metric == 1.0
    assert result.summary()["chosen"] == result.settings


def test_sequences_are_time_ordered_catalogue_positions_of_the_listed_users():
    histories = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "c", "a"],
            "item_id": ["x", "y", "z", "x", "y", "w"],
            "timestamp": [30, 10, 20, 5, 1, 10],
        }
    )
    item_ids = ["x", "y", "z"]  # "w" is not in the catalogue
    assert train_sequences(histories, ["a", "b"], item_ids) == [[1, 2, 0], [0]]
    examples = pl.DataFrame({"history_item_ids": [["z", "x"]], "target_item_id": ["y"]})
    history_positions, target_positions = example_positions(examples, item_ids)
    assert history_positions[0].tolist() == [2, 0] and target_positions.tolist() == [1]
    bad = pl.DataFrame({"history_item_ids": [["x"], ["w"]], "target_item_id": ["y", "y"]})
    with pytest.raises(KeyError, match="row 1, history_item_ids: item 'w'"):
        example_positions(bad, item_ids)


def test_ranks_match_the_shared_evaluation_path_of_lpt_core_baselines(users):
    """The ranks a baseline method gets through EvalContext/rank_by_scores (as popularity and
    random do) equal target_ranks on catalogue positions: same exclusion, same tie rule."""
    knn = ItemKNN.fit(users, N_ITEMS, k=3)
    item_ids = [f"m{p}" for p in range(N_ITEMS)]
    rows = [([2, 4, 6], 3), ([21, 0], 1), ([5, 5, 7], 8), ([25], 26)]
    examples = pl.DataFrame(
        {
            "user_id": [f"u{r}" for r in range(len(rows))],
            "history_item_ids": [[item_ids[p] for p in history] for history, _ in rows],
            "target_item_id": [item_ids[target] for _, target in rows],
        }
    )
    index = ItemIndex.build(item_ids, np.random.default_rng(0).random((N_ITEMS, 4)))
    ctx = EvalContext(examples=examples, index=index, encoder=None, item_text={}, train_item_counts={}, seed=0)
    histories, targets = example_positions(examples, item_ids)
    remaining = iter(histories)
    via_context = rank_by_scores(ctx, lambda n: knn.scores([next(remaining) for _ in range(n)]))
    np.testing.assert_array_equal(target_ranks(knn, histories, targets), via_context)
