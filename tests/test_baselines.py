"""Every registered method ranks the full catalogue with the history removed, on a tiny world."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from builders import example_row, examples_table
from sentence_transformers import SentenceTransformer

from lpt_core import baselines, evaluation_methods
from lpt_core.baselines import METHODS, EvalContext, HeadTraining, evaluate_methods, register
from lpt_core.config import EvaluationConfig, ItemHeadConfig
from lpt_core.report import build_report
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.item_head import TextRows, popularity_prior

GENRES = ["drama", "comedy", "action", "thriller", "horror", "romance", "crime", "mystery", "fantasy", "war"]
ITEM_TEXT = {f"m{i}": f"Title: {GENRES[i % 10]} {i}\nCategory: {GENRES[(i * 3) % 10]}" for i in range(40)}
# m0 is by far the most popular item, m1 the second; every other count is distinct and lower.
COUNTS = {"m0": 100, "m1": 90, **{f"m{i}": 50 - i for i in range(2, 40)}}
# (user, history, target): u0 has not seen m0; u1 has seen m0 and its target is m1.
ROWS = [
    ("u0", ["m5", "m6", "m7", "m8"], "m0"),
    ("u1", ["m0", "m9", "m10", "m11"], "m1"),
    ("u2", ["m12", "m13", "m14", "m15"], "m16"),
    ("u2", ["m13", "m14", "m15", "m16"], "m17"),  # a second window of the same user
    ("u3", ["m20", "m21", "m21", "m22"], "m30"),  # an item repeated in the history
]


def head_rows(first: int, count: int) -> TextRows:
    """Rows whose query is their target's own text, history the two items after it."""
    targets = [f"m{i}" for i in range(first, first + count)]
    histories = [[f"m{(i + 1) % 40}", f"m{(i + 2) % 40}"] for i in range(first, first + count)]
    return TextRows([ITEM_TEXT[t] for t in targets], targets, histories)


def examples(rows=ROWS) -> pl.DataFrame:
    return examples_table(*[
        example_row(user, "test", history, target, window=window, history_reviews=["fine"] * len(history))
        for window, (user, history, target) in enumerate(rows)
    ])


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder) -> TextEncoder:
    return TextEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"))


@pytest.fixture(scope="module")
def ctx(encoder) -> EvalContext:
    ids = list(ITEM_TEXT)
    index = ItemIndex.build(ids, encoder.encode([ITEM_TEXT[i] for i in ids]))
    frame = examples()
    targets = frame["target_item_id"].to_list()
    return EvalContext(
        examples=frame,
        index=index,
        encoder=encoder,
        item_text=ITEM_TEXT,
        train_item_counts=COUNTS,
        seed=0,
        # A query that IS the target's text must rank it first: checks the query plumbing.
        history_texts=[ITEM_TEXT[t] for t in targets],
        profiles=[ITEM_TEXT[t] for t in targets],
        # Two samples per row: the target's own text and that of an unrelated item.
        sampled_profiles=[[ITEM_TEXT[t], ITEM_TEXT["m39"]] for t in targets],
        # Both head rows fit on the same train/val rows (here the same texts for both kinds).
        head_training=HeadTraining(
            {kind: (head_rows(0, 24), head_rows(24, 12)) for kind in ("history_text", "profile")},
            ItemHeadConfig(kind="linear", epochs=3, learning_rate=0.01, batch_size=8, bias_init="zero"),
        ),
    )


def test_every_method_ranks_the_catalogue_minus_the_history(ctx):
    # sasrec / item_knn need fitted models (ctx.models): tests/test_sasrec.py and test_item_knn.py.
    ranks = evaluate_methods(ctx, [name for name in METHODS if name not in ("sasrec", "item_knn")])
    assert set(ranks) >= {"random", "popularity", "last_item_text", "history_text", "profile"}
    for name, method_ranks in ranks.items():
        assert method_ranks.shape == (len(ROWS),), name
        for rank, (_, history, _) in zip(method_ranks, ROWS):
            assert 1 <= rank <= len(ITEM_TEXT) - len(set(history)), name


def test_text_queries_equal_to_the_target_text_rank_it_first(ctx):
    ranks = evaluate_methods(ctx, ["history_text", "profile"])
    np.testing.assert_array_equal(ranks["history_text"], 1.0)
    np.testing.assert_array_equal(ranks["profile"], 1.0)


def test_head_rows_fit_on_their_train_texts_and_rank_like_their_untrained_row_at_worst(ctx):
    ranks = evaluate_methods(ctx, ["history_text_head", "profile_head", "history_text"])
    # Same train/val rows and texts for both kinds, same evaluated queries: the same ranks.
    np.testing.assert_array_equal(ranks["history_text_head"], ranks["profile_head"])
    # Cosine already ranks every val row's target first (its query is the target's text): no
    # epoch beats the untrained head, so the one kept ranks exactly as plain cosine does.
    np.testing.assert_array_equal(ranks["history_text_head"], ranks["history_text"])
    with pytest.raises(ValueError, match="head_training with 'profile' rows"):
        only_history = HeadTraining({"history_text": ctx.head_training.rows["history_text"]}, ctx.head_training.config)
        METHODS["profile_head"](EvalContext(**{**ctx.__dict__, "head_training": only_history}))


def test_head_rows_start_their_bias_from_the_train_popularity_prior(ctx):
    """With bias_init "popularity" the head's bias starts at the prior of ctx.train_item_counts,
    in the index's item order (a learning rate of 1e-9 keeps it there)."""
    config = ItemHeadConfig(kind="linear", epochs=1, learning_rate=1e-9, batch_size=8, bias_init="popularity")
    training = HeadTraining(ctx.head_training.rows, config)
    fitted = training.fitted("profile", ctx.encoder, ctx.index, 0, ctx.train_item_counts)
    counts = [COUNTS.get(i, 0) for i in ctx.index.item_ids.tolist()]
    np.testing.assert_allclose(fitted.head.bias, popularity_prior(np.array(counts)), atol=1e-5)


def test_popularity_puts_the_most_popular_unseen_item_first(ctx):
    ranks = METHODS["popularity"](ctx)
    assert ranks[0] == 1  # u0's target is m0, the most popular item
    assert ranks[1] == 1  # u1 has seen m0, so their target m1 moves up to first
    assert ranks[2] == 1 + 2 + 14 - 4  # m0, m1 and m2..m15 above m16, minus 4 history items


def test_popularity_ties_take_the_expected_rank(ctx):
    tied = EvalContext(**{**ctx.__dict__, "train_item_counts": {i: 1 for i in ITEM_TEXT}})
    ranks = METHODS["popularity"](tied)
    expected = [1 + (len(ITEM_TEXT) - 1 - len(set(h))) / 2 for _, h, _ in ROWS]
    np.testing.assert_allclose(ranks, expected)


def test_random_is_seeded(ctx):
    again = METHODS["random"](ctx)
    np.testing.assert_array_equal(METHODS["random"](ctx), again)
    other = EvalContext(**{**ctx.__dict__, "seed": 1})
    assert not np.array_equal(METHODS["random"](other), again)


def test_last_item_text_queries_with_the_last_history_item(ctx, encoder):
    # A catalogue item with exactly the text of u0's last history item must come first for u0.
    item_text = {**ITEM_TEXT, "copy": ITEM_TEXT["m8"]}
    ids = list(item_text)
    index = ItemIndex.build(ids, encoder.encode([item_text[i] for i in ids]))
    frame = examples([("u0", ["m5", "m6", "m7", "m8"], "copy")])
    copy_ctx = EvalContext(frame, index, encoder, item_text, COUNTS, seed=0)
    assert METHODS["last_item_text"](copy_ctx)[0] == 1.0


def test_profile_mean_ranks_by_the_mean_score_of_the_samples(ctx, encoder):
    ranks = METHODS["profile_mean"](ctx)
    # Directly: each sample scored against every item, scores averaged, history removed, ranked.
    items = ctx.index.item_ids.tolist()
    item_vectors = encoder.encode([ITEM_TEXT[i] for i in items])
    for row, (samples, (_, history, target)) in enumerate(zip(ctx.sampled_profiles, ROWS)):
        scores = np.mean([item_vectors @ vector for vector in encoder.encode(samples)], axis=0)
        allowed = [p for p, item in enumerate(items) if item not in history]
        target_score = scores[items.index(target)]
        higher = sum(scores[p] > target_score + 1e-6 for p in allowed)
        assert higher + 1 <= ranks[row] <= higher + 1 + sum(abs(scores[p] - target_score) <= 1e-6 for p in allowed)
    # One sample per row repeated is the plain profile row.
    single = EvalContext(**{**ctx.__dict__, "sampled_profiles": [[p, p, p] for p in ctx.profiles]})
    np.testing.assert_array_equal(METHODS["profile_mean"](single), METHODS["profile"](ctx))


def test_profile_mean_needs_the_same_number_of_samples_per_row(ctx):
    ragged = EvalContext(**{**ctx.__dict__, "sampled_profiles": [["a"], ["a", "b"], ["a"], ["a"], ["a"]]})
    with pytest.raises(ValueError, match="same number"):
        METHODS["profile_mean"](ragged)
    with pytest.raises(ValueError, match="sampled_profiles"):
        METHODS["profile_mean"](EvalContext(**{**ctx.__dict__, "sampled_profiles": None}))


def test_missing_inputs_and_unknown_methods_are_named(ctx):
    without_profiles = EvalContext(**{**ctx.__dict__, "profiles": None})
    with pytest.raises(ValueError, match="profiles"):
        evaluate_methods(without_profiles, ["profile"])
    with pytest.raises(ValueError, match=r"models\['sasrec'\]"):
        evaluate_methods(ctx, ["sasrec"])
    with pytest.raises(KeyError, match="no_such_method"):
        evaluate_methods(ctx, ["no_such_method"])


def test_a_new_report_row_is_one_decorated_function_and_its_name(ctx, monkeypatch):
    """docs/extending.md, "Add a report row", done as it says: the function decorated with
    @register("name") and the name in lpt_core/evaluation_methods.py; a recipe may then list it
    and it is a row of the report."""
    monkeypatch.setattr(baselines, "METHODS", dict(METHODS))
    with pytest.raises(ValueError, match="add its name to EVALUATION_METHODS"):
        register("always_last")(lambda context: None)
    monkeypatch.setattr(evaluation_methods, "EVALUATION_METHODS", (*evaluation_methods.EVALUATION_METHODS, "always_last"))

    @register("always_last")
    def always_last(context: EvalContext) -> np.ndarray:
        return np.full(context.examples.height, float(len(context.index)))

    methods = EvaluationConfig(methods=("profile", "always_last")).methods
    ranks = evaluate_methods(ctx, methods)
    assert ranks["always_last"].tolist() == [40.0] * len(ROWS)
    report = build_report(ranks, ctx.examples["user_id"].to_list(), ks=(10,), samples=20, confidence=0.9, seed=0)
    assert report.methods["always_last"]["recall@10"].mean == 0.0
    with pytest.raises(ValueError, match="already registered"):
        register("always_last")(always_last)


def test_a_variants_profiles_under_profile_heads_recommender_isolate_the_llm(ctx):
    """The `<variant>@profile_head` row ranks the variant's profiles by profile_head's own fit: the
    zero-shot profiles give exactly profile_head's ranks, other profiles (the last item's text
    instead of the target's) rank the targets lower under the same recommender."""
    from lpt_core.evaluation import trained_profiles_under_profile_head, under_profile_head_name

    def trained(texts: list[str]) -> pl.DataFrame:
        keys = ctx.examples.select("user_id", "split", "window")
        return keys.with_columns(profile=pl.Series(texts), variant=pl.lit("v"))

    same = trained_profiles_under_profile_head(ctx, "v", trained(ctx.profiles))
    other = trained_profiles_under_profile_head(ctx, "v", trained([ITEM_TEXT[h[-1]] for _, h, _ in ROWS]))

    np.testing.assert_array_equal(same, evaluate_methods(ctx, ["profile_head"])["profile_head"])
    assert (other > same).all()
    assert under_profile_head_name("v") == "v@profile_head"
