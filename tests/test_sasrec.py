"""SASRec learns a planted sequential pattern, reads only the history it is given, round-trips
through disk, and is tuned on validation users under a budget."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import torch

from lpt_core.recommenders import load_baseline_models, save_baseline_models, target_ranks
from lpt_core.recommenders.item_knn import ItemKNN
from lpt_core.recommenders.sasrec import SASRec, SASRecConfig, fit_sasrec, load_sasrec, save_sasrec
from lpt_core.recommenders.sequences import BaselineData
from lpt_core.recommenders.tuning import BaselineSearch, grid_points, pinned_overrides, search_sasrec, tune_baselines
from lpt_core.retrieval import rank_targets

N_ITEMS = 24
STEPS = (1, 2)
HISTORY = 6
TRAIN_USERS = 500
# Small and fast: one block learns the pattern in a few epochs.
FAST = SASRecConfig(hidden=64, blocks=1, dropout=0.0, max_len=8, lr=3e-3, epochs=12, patience=4,
                    batch_size=64, metric="recall@1")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The shared CPU is oversubscribed: one torch thread is ~10x faster here than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def progressions(count: int, length: int, seed: int) -> list[list[int]]:
    """Cyclic arithmetic progressions: the next item is last + (last - previous) mod N_ITEMS, a
    fixed function of the LAST TWO items (the last item alone leaves the step ambiguous)."""
    rng = np.random.default_rng(seed)
    return [
        [int(start + step * t) % N_ITEMS for t in range(length)]
        for start, step in zip(rng.integers(N_ITEMS, size=count), rng.choice(STEPS, size=count))
    ]


def split(sequences: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    return [s[:HISTORY] for s in sequences], [s[HISTORY] for s in sequences]


@pytest.fixture(scope="module")
def trained() -> tuple[SASRec, dict]:
    val_histories, val_targets = split(progressions(60, HISTORY + 1, seed=1))
    return fit_sasrec(progressions(TRAIN_USERS, 12, seed=0), val_histories, val_targets, N_ITEMS, FAST)


def test_the_planted_pattern_needs_the_last_two_items():
    successors = defaultdict(set)
    for sequence in progressions(TRAIN_USERS, 12, seed=0):
        for last, following in zip(sequence[:-1], sequence[1:]):
            successors[last].add(following)
    assert all(len(after) == len(STEPS) for after in successors.values())


def test_sasrec_learns_the_planted_pattern_on_unseen_users(trained):
    model, info = trained
    histories, targets = split(progressions(200, HISTORY + 1, seed=2))
    ranks = target_ranks(model, histories, targets)
    # Reading only the last item could reach 1/len(STEPS) at best.
    assert np.mean(ranks <= 1) >= 0.95
    assert info["val_recall@1"] >= 0.95
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= FAST.epochs


def test_scores_depend_on_the_history_only_and_are_deterministic(trained):
    model, _ = trained
    history = [[3, 5, 7, 9], [3, 5, 7, 9], [10, 11, 12, 13]]
    scores = model.scores(history)
    assert scores.shape == (3, N_ITEMS)
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores, model.scores(history))
    # Items older than max_len are never read.
    longer = [[0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15, 17, 19, 21, 23]]
    np.testing.assert_allclose(model.scores(longer), model.scores([longer[0][-FAST.max_len :]]), rtol=1e-5, atol=1e-5)


def test_ranking_excludes_history_exactly_as_rank_targets(trained):
    model, _ = trained
    histories, targets = split(progressions(20, HISTORY + 1, seed=3))
    expected = rank_targets(model.scores(histories), np.array(targets), [np.array(h) for h in histories])
    np.testing.assert_array_equal(target_ranks(model, histories, targets), expected)
    with pytest.raises(ValueError, match="target item is also in the items to exclude"):
        target_ranks(model, [[1, 2, 3]], [2])


def test_saved_models_score_identically_and_check_the_catalogue(trained, tmp_path):
    model, _ = trained
    history = [[2, 4, 6, 8]]
    reloaded = load_sasrec(save_sasrec(model, tmp_path / "one"))
    np.testing.assert_array_equal(reloaded.scores(history), model.scores(history))
    item_ids = [f"i{p}" for p in range(N_ITEMS)]
    knn = ItemKNN.fit(progressions(50, 12, seed=0), N_ITEMS, k=5)
    save_baseline_models(tmp_path / "set", {"sasrec": model, "item_knn": knn}, item_ids, {"sasrec": {"hidden": 64}})
    loaded = load_baseline_models(tmp_path / "set", item_ids)
    assert sorted(loaded) == ["item_knn", "sasrec"]
    np.testing.assert_array_equal(loaded["sasrec"].scores(history), model.scores(history))
    np.testing.assert_array_equal(loaded["item_knn"].scores(history), knn.scores(history))
    with pytest.raises(ValueError, match="differs"):
        load_baseline_models(tmp_path / "set", list(reversed(item_ids)))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="hidden=30 must be divisible by heads=4"):
        SASRecConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="metric must be one of"):
        SASRecConfig(metric="auc")
    with pytest.raises(ValueError, match=r"train_sequences\[1\]"):
        fit_sasrec([[0, 1], [0, N_ITEMS]], [[0]], [1], N_ITEMS, FAST)


def test_grid_points_draws_a_seeded_subset_within_the_budget():
    grid = {"hidden": [16, 32], "blocks": [1, 2], "dropout": [0.0, 0.5]}
    assert len(grid_points(grid, None, 0)) == 8
    drawn = grid_points(grid, 3, seed=0)
    assert len(drawn) == 3 and len({tuple(p.values()) for p in drawn}) == 3
    assert drawn == grid_points(grid, 3, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        grid_points({"hidden": []}, None, 0)


def test_search_selects_the_setting_that_learns_on_validation_users():
    val_histories, val_targets = split(progressions(40, HISTORY + 1, seed=1))
    # lr 1e-6 cannot learn in a few epochs; the search must pick lr 3e-3.
    result = search_sasrec(
        progressions(TRAIN_USERS, 12, seed=0), val_histories, val_targets, N_ITEMS,
        grid={"lr": [1e-6, 3e-3]}, base=FAST, trials=2,
    )
    assert [t.settings["lr"] for t in result.trials] == [1e-6, 3e-3]
    assert result.settings == {"lr": 3e-3}
    assert result.metric == result.trials[1].metric > result.trials[0].metric
    with pytest.raises(ValueError, match="not SASRecConfig fields"):
        search_sasrec([[0, 1]], [[0]], [1], N_ITEMS, {"width": [1]}, FAST, trials=1)


def test_time_budget_stops_starting_trials_but_runs_the_first():
    val_histories, val_targets = split(progressions(20, HISTORY + 1, seed=1))
    result = search_sasrec(
        progressions(50, 12, seed=0), val_histories, val_targets, N_ITEMS,
        grid={"lr": [1e-3, 3e-3]}, base=replace(FAST, epochs=1), trials=2, time_budget_s=1e-9,
    )
    assert len(result.trials) == 1 and result.settings == {"lr": 1e-3}


def test_tune_baselines_runs_both_searches_and_pins_the_choice_for_the_recipe():
    val_histories, val_targets = split(progressions(20, HISTORY + 1, seed=1))
    data = BaselineData([f"i{p}" for p in range(N_ITEMS)], progressions(50, 12, seed=0),
                        [np.array(h) for h in val_histories], np.array(val_targets))
    search = BaselineSearch(sasrec_grid={"hidden": [16], "max_len": [8]}, sasrec_trials=1, epochs=1,
                            knn_neighbours=[2, 4], knn_similarities=["cosine"], metric="recall@5", threads=1)
    seen = []
    torch.set_num_threads(2)
    results = tune_baselines(data, search, on_trial=lambda method, trial: seen.append(method))
    threads_after = torch.get_num_threads()
    torch.set_num_threads(1)
    assert threads_after == 2  # restored after training
    assert seen == ["sasrec", "item_knn", "item_knn"]
    assert results["sasrec"].model.cfg.hidden == 16 and results["sasrec"].model.cfg.metric == "recall@5"
    assert pinned_overrides(results) == {
        "baselines": {
            "sasrec_grid": {"hidden": [16], "max_len": [8]}, "sasrec_trials": 1,
            "knn_neighbours": [results["item_knn"].settings["k"]], "knn_similarities": ["cosine"],
        }
    }
