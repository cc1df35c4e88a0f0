"""Each profile-quality score on constructed inputs whose right answer is known."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import polars as pl
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lpt_core.dislikes import encode_profiles
from lpt_core.profile_quality import copies_history, copy_share
from lpt_core.profile_quality.faithfulness import (
    genre_patterns,
    genre_sample_markdown,
    genre_vocabulary,
    ground_genres,
    mentioned_genres,
)
from lpt_core.profile_quality.intervals import user_bootstrap
from lpt_core.profile_quality.readability import (
    distinct_trigram_ratio,
    is_finished,
    is_looping,
    non_preference_share,
    readability,
)
from lpt_core.profile_quality.report import ProfileVariant, QualitySettings, assess_profiles
from lpt_core.profile_quality.simulated_reader import (
    NO_PROFILE,
    LikelihoodJudge,
    choice_credit,
    reader_accuracy,
    sample_candidates,
)
from lpt_core.profile_quality.steerability import (
    DISLIKE_PHRASINGS,
    EDIT_KINDS,
    ProfileEdit,
    add_genre,
    cut_off,
    dislike_genre,
    edit_steerability,
    plan_edits,
    remove_genre,
    row_means,
)
from lpt_core.retrieval import ItemIndex

HISTORY = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Alien (1979)"]
GENRES = ["Comedy", "Horror", "Romance", "Sci-Fi", "War"]


# --- copying ---------------------------------------------------------------------------------

def test_field_lines_count_as_copying():
    assert copies_history("Title: Toy Story (1995)\nRating from the user: 4", HISTORY)
    assert copies_history("Summary first.\n- Category: Comedy, Drama", HISTORY)


def test_naming_most_titles_counts_as_copying_but_a_mention_does_not():
    assert copies_history("Toy Story, Heat and Fargo, then Alien.", HISTORY)
    assert not copies_history("Enjoys tense crime thrillers such as Heat; dislikes musicals.", HISTORY)


def test_copy_share():
    profiles = ["Title: Heat", "Loves slow-burn sci-fi.", "Prefers comedies."]
    assert copy_share(profiles, [HISTORY] * 3) == 1 / 3
    assert copy_share([], []) == 0.0


# --- readability -----------------------------------------------------------------------------

def test_distinct_trigram_ratio_counts_repeated_word_trigrams():
    assert distinct_trigram_ratio("a b c a b c a b c") == pytest.approx(3 / 7)
    assert distinct_trigram_ratio("Loves quiet dramas about families.") == 1.0
    assert distinct_trigram_ratio("too short") == 1.0


def test_non_preference_share_counts_tokens_leftovers_and_field_lines():
    assert non_preference_share("Loves quiet dramas.") == 0.0
    assert non_preference_share("") == 0.0
    # 10 visible characters of profile, then a turn end and 10 more: half is leftover.
    assert non_preference_share("abcdefghij<|im_end|>") == pytest.approx(10 / 20)
    assert non_preference_share("Likes war<|im_start|>") == pytest.approx(12 / 20)
    assert non_preference_share("Good taste.\nTitle: Heat (1995)") == pytest.approx(16 / 26)
    # Fragments of the compact history lines: "(1995)[Crime]" is 13 and "rated4.0/5" 10 characters.
    assert non_preference_share("Likes Heat (1995) [Crime] rated 4.0/5") == pytest.approx(23 / 32)


def test_readability_bundles_the_signals():
    signals = readability("Title: Heat\nLoves heists.", HISTORY)
    assert signals.words == 4 and signals.copies_history and signals.non_preference_share > 0
    assert not signals.looping and readability("A mix of horror, horror, horror, horror, horror.", HISTORY).looping


def test_a_profile_is_finished_when_the_model_ended_it_or_it_ends_a_sentence():
    assert is_finished("Enjoys comedies", ended_turn=True)
    assert is_finished("Enjoys comedies.", ended_turn=False)
    assert not is_finished("Enjoys comedies and", ended_turn=False)
    # A loop: 7 of 10 trigrams distinct is not looping, 6 of 10 is.
    assert not is_looping("a b c d e f g a b c d e") and is_looping("a b c d e f a b c d e f")


# --- faithfulness ----------------------------------------------------------------------------

def test_vocabulary_drops_uninformative_categories():
    categories = [["Drama", "unknown"], ["Drama", "Horror"], ["Drama"], ["Comedy"]]
    assert genre_vocabulary(categories) == ["Comedy", "Horror"]  # Drama: 3 of 4 items


def test_genre_patterns_match_plurals_aliases_and_whole_words_only():
    patterns = genre_patterns(["Comedy", "Sci-Fi", "Children's", "Drama", "Film-Noir"])
    found = mentioned_genres("Loves comedies, science fiction and kids' films.", patterns)
    assert found == ["Comedy", "Sci-Fi", "Children's"]
    assert mentioned_genres("A dramatic taste; noir-ish.", patterns) == []
    assert mentioned_genres("Enjoys sci fi and film-noir classics.", patterns) == ["Sci-Fi", "Film-Noir"]


def test_grounding_marks_supported_and_unsupported_genres():
    patterns = genre_patterns(GENRES)
    grounding = ground_genres("Enjoys horror and romance, avoids war films.", {"Horror", "Comedy"}, patterns)
    assert grounding.supported == ("Horror",)
    assert grounding.unsupported == ("Romance", "War")
    assert grounding.grounded_share == pytest.approx(1 / 3)
    assert np.isnan(ground_genres("Likes good films.", {"Horror"}, patterns).grounded_share)


def test_history_titles_are_not_genre_claims():
    patterns = genre_patterns(GENRES)
    assert mentioned_genres("A big Star Wars fan.", patterns, ["Star Wars (1977)"]) == []
    assert mentioned_genres("Loved The Horror Show.", patterns, ["Horror Show, The (1989)"]) == []
    assert mentioned_genres("A big Star Wars fan.", patterns) == ["War"]


def test_genre_sample_lists_only_profiles_naming_genres_up_to_count():
    patterns = genre_patterns(GENRES)
    profiles = ["Likes good films.", "Loves horror.", "Loves romance.", "Loves comedy."]
    groundings = [ground_genres(p, {"Horror"}, patterns) for p in profiles]
    sample = genre_sample_markdown(profiles, groundings, ["u1", "u2", "u3", "u4"], count=2)
    assert "u1" not in sample and "u4" not in sample
    assert "Horror (supported)" in sample and "**Romance (unsupported)**" in sample


# --- simulated reader ------------------------------------------------------------------------

def test_candidates_hold_the_target_and_no_history_item_and_are_seeded():
    catalogue = [f"i{n}" for n in range(20)]
    rows = sample_candidates(["i0", "i1"], [["i2", "i3"], ["i4"]], catalogue, count=5, seed=7)
    assert [len(set(r)) for r in rows] == [5, 5]
    assert "i0" in rows[0] and "i1" in rows[1]
    assert not {"i2", "i3"} & set(rows[0]) and "i4" not in rows[1]
    assert rows == sample_candidates(["i0", "i1"], [["i2", "i3"], ["i4"]], catalogue, count=5, seed=7)
    # A row's draw does not depend on the other rows.
    assert sample_candidates(["i0"], [["i2", "i3"]], catalogue, 5, 7)[0] == rows[0]
    with pytest.raises(ValueError, match="row 0"):
        sample_candidates(["i0"], [catalogue[1:]], catalogue, count=3, seed=0)


def test_choice_credit_splits_ties():
    assert choice_credit(np.array([0.1, 0.9, 0.3]), 1) == 1.0
    assert choice_credit(np.array([0.1, 0.9, 0.3]), 0) == 0.0
    assert choice_credit(np.array([0.9, 0.9, 0.3]), 0) == 0.5


def test_reader_accuracy_follows_the_judge():
    profiles = ["loves horror", "loves romance"]
    candidates = [["Category: Comedy", "Category: Horror"], ["Category: Romance", "Category: War"]]

    def keyword_judge(profiles, candidates):
        return [np.array([float(p.split()[-1] in c.lower()) for c in row]) for p, row in zip(profiles, candidates)]

    assert reader_accuracy(profiles, candidates, [1, 0], keyword_judge).tolist() == [1.0, 1.0]
    assert reader_accuracy(profiles, candidates, [0, 1], keyword_judge).tolist() == [0.0, 0.0]

    def blind_judge(profiles, candidates):
        return [np.zeros(len(row)) for row in candidates]

    assert reader_accuracy(profiles, candidates, [0, 1], blind_judge).tolist() == [0.5, 0.5]  # chance


@pytest.fixture(scope="module")
def tiny_judge_parts(tiny_lm_folder):
    folder = tiny_lm_folder
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_likelihood_judge_scores_do_not_depend_on_batching(tiny_judge_parts):
    model, tokenizer = tiny_judge_parts
    profiles = ["enjoys comedies", "a long profile about slow-burn thrillers with a great cast"]
    candidates = [["Title: Toy Story (1995)", "Title: Heat"], ["Category: Comedy", "Title: A much longer title here"]]
    one = LikelihoodJudge(model, tokenizer, "Which movie next?", batch_size=1)(profiles, candidates)
    four = LikelihoodJudge(model, tokenizer, "Which movie next?", batch_size=4)(profiles, candidates)
    assert [s.shape for s in four] == [(2,), (2,)]
    np.testing.assert_allclose(np.concatenate(one), np.concatenate(four), atol=1e-4)
    assert np.all(np.isfinite(np.concatenate(four))) and np.ptp(np.concatenate(four)) > 0


def test_likelihood_judge_is_zero_for_the_empty_profile(tiny_judge_parts):
    # PMI against the no-profile prompt: reading no profile adds nothing to any candidate.
    judge = LikelihoodJudge(*tiny_judge_parts, "Which movie next?", batch_size=3)
    scores = judge([NO_PROFILE], [["Title: Heat", "Title: Toy Story (1995)"]])
    np.testing.assert_allclose(scores[0], 0.0, atol=1e-5)


# --- steerability ----------------------------------------------------------------------------

def genre_encoder(texts):
    """Bag of genres plus a constant direction: a recommender whose behaviour is known."""
    vectors = np.array([[float(g.lower() in t.lower()) for g in GENRES] + [1.0] for t in texts], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def genre_catalog() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for n in range(30):
        genres = sorted(rng.choice(GENRES, size=2, replace=False).tolist())
        rows.append({"item_id": f"i{n}", "title": f"Movie {n}", "categories": genres,
                     "text": f"Title: Movie {n}\nCategory: {', '.join(genres)}"})
    return pl.DataFrame(rows)


def genre_index(catalog: pl.DataFrame, bias: np.ndarray | None = None) -> ItemIndex:
    return ItemIndex.build(catalog["item_id"].to_list(), genre_encoder(catalog["text"].to_list()), bias=bias)


def genre_masks(catalog: pl.DataFrame) -> dict[str, np.ndarray]:
    return {g: np.array([g in c for c in catalog["categories"].to_list()]) for g in GENRES}


def test_edits_add_a_sentence_or_remove_the_sentences_naming_the_genre():
    patterns = genre_patterns(GENRES)
    assert add_genre("Likes comedy. ", "Horror") == "Likes comedy. They love Horror movies."
    assert remove_genre("Likes comedy. Fears horror films! Calm.", patterns["Horror"]) == "Likes comedy. Calm."
    assert dislike_genre("Likes comedy.", "Horror") == "Likes comedy. They dislike Horror movies."
    edits = plan_edits(["Likes comedy and war films.", "Likes films."], patterns, edits_per_user=2, seed=0)
    kinds = {(0, "add"), (0, "remove"), (0, "dislike"), (0, "dislike_cut_off"), (1, "add"), (1, "dislike"),
             (1, "dislike_cut_off")}
    assert {(e.row, e.kind) for e in edits} == kinds
    assert [sum(e.kind == kind for e in edits) for kind in EDIT_KINDS] == [4, 2, 4, 4]
    # Issue 31.13: dislikes in several phrasings; after a cut-off profile, ranked against it.
    assert len({e.text.removeprefix("Likes comedy and war films. ") for e in edits if e.kind == "dislike"}) > 1
    cut = [e for e in edits if e.kind == "dislike_cut_off" and e.row == 0]
    assert all(e.before == "Likes comedy and" and e.text.startswith("Likes comedy and ") for e in cut)
    assert all(e.genre not in ("Comedy", "War") for e in edits if e.kind == "add" and e.row == 0)
    assert edits == plan_edits(["Likes comedy and war films.", "Likes films."], patterns, 2, 0)


@pytest.mark.parametrize("with_bias", [False, True])
def test_steering_towards_a_genre_moves_its_items_up_and_removal_moves_them_down(with_bias):
    catalog = genre_catalog()
    bias = np.linspace(-0.05, 0.05, catalog.height) if with_bias else None
    index = genre_index(catalog, bias)
    profiles = ["Likes comedy.", "Likes comedy. Enjoys horror."]
    patterns = genre_patterns(GENRES)
    edits = [
        ProfileEdit(0, "Horror", "add", add_genre(profiles[0], "Horror")),
        ProfileEdit(1, "Horror", "remove", remove_genre(profiles[1], patterns["Horror"])),
        ProfileEdit(0, "Horror", "add", profiles[0]),  # an edit that changes nothing
    ]
    values = edit_steerability(index, genre_encoder, profiles, edits, genre_masks(catalog))
    assert values[0] > 0.1 and values[1] > 0.1
    assert values[2] == 0.0
    assert np.all(values <= 1.0)
    means = row_means(edits, values, rows=3, kind="add")
    assert means[0] == pytest.approx((values[0] + values[2]) / 2) and np.isnan(means[1]) and np.isnan(means[2])


def test_a_dislike_edit_scores_negative_on_a_plain_encoder_and_positive_on_the_served_query():
    catalog = genre_catalog()
    index = genre_index(catalog)
    profiles = ["Likes comedy."]
    edits = [ProfileEdit(0, "Horror", "dislike", dislike_genre(profiles[0], "Horror"))]
    served = partial(encode_profiles, genre_encoder)

    plain = edit_steerability(index, genre_encoder, profiles, edits, genre_masks(catalog))[0]
    dislike_aware = edit_steerability(index, served, profiles, edits, genre_masks(catalog))[0]

    assert plain < 0 < dislike_aware


@pytest.mark.parametrize("phrasing", DISLIKE_PHRASINGS)
def test_a_dislike_in_any_phrasing_after_a_cut_off_profile_scores_positive_on_the_served_query(phrasing):
    """Issue 31.13: after a profile cut off mid-sentence, a dislike was read as liked."""
    catalog = genre_catalog()
    index = genre_index(catalog)
    cut = cut_off("Likes comedy and war films a lot.")
    edits = [ProfileEdit(0, "Horror", "dislike_cut_off", dislike_genre(cut, "Horror", phrasing=phrasing), cut)]
    served = partial(encode_profiles, genre_encoder)
    assert cut == "Likes comedy and war films"
    assert edit_steerability(index, served, ["unused: the edit says what it is ranked against"], edits,
                             genre_masks(catalog))[0] > 0


def test_an_encoder_that_ignores_the_edit_is_not_steerable():
    catalog = genre_catalog()
    index = genre_index(catalog)
    profiles = ["Likes comedy."]
    edits = [ProfileEdit(0, "Horror", "add", add_genre(profiles[0], "Horror"))]

    def deaf_encoder(texts):
        return genre_encoder(["Likes comedy."] * len(texts))

    assert edit_steerability(index, deaf_encoder, profiles, edits, genre_masks(catalog))[0] == 0.0


# --- intervals -------------------------------------------------------------------------------

def test_user_bootstrap_skips_nan_rows_and_pairs_differences():
    users = ["a", "a", "b", "c"]
    values = {"zero_shot": np.array([1.0, np.nan, 0.0, 1.0]), "trained": np.array([1.0, 1.0, 1.0, 1.0])}
    means, differences = user_bootstrap(values, users, samples=200, seed=0, baseline="zero_shot")
    assert means["zero_shot"].mean == pytest.approx(2 / 3)
    assert means["trained"].as_dict() == {"mean": 1.0, "low": 1.0, "high": 1.0}
    gap = differences["trained - zero_shot"]
    assert gap.mean == pytest.approx(1 / 3) and gap.low >= 0.0 and gap.low <= gap.mean <= gap.high
    empty, _ = user_bootstrap({"x": np.array([np.nan, np.nan])}, ["a", "b"], samples=10)
    assert np.isnan(empty["x"].mean)
    with pytest.raises(ValueError, match="score 'x'"):
        user_bootstrap({"x": np.array([1.0])}, ["a", "b"])


# --- the whole report ------------------------------------------------------------------------

def report_examples(catalog: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """12 test rows of 12 users, and a profile of each naming its target's genres."""
    genres_of = dict(zip(catalog["item_id"].to_list(), catalog["categories"].to_list()))
    targets = [f"i{n}" for n in range(12)]
    examples = pl.DataFrame({
        "user_id": [f"u{n}" for n in range(12)], "split": ["test"] * 12, "window": [0] * 12,
        "history_item_ids": [[f"i{n + 12}", f"i{n + 13}"] for n in range(12)],
        "target_item_id": targets,
    })
    return examples, [f"Loves {' and '.join(genres_of[t]).lower()} films." for t in targets]


def genre_judge(profiles, candidates):
    return [genre_encoder(row) @ genre_encoder([p])[0] for p, row in zip(profiles, candidates)]


def test_report_ranks_an_informative_profile_variant_above_a_vague_one(tmp_path):
    catalog = genre_catalog()
    index = genre_index(catalog)
    # Informative profiles name the target's genres; vague ones name none and carry a leftover.
    examples, informative = report_examples(catalog)
    vague = ["Enjoys films.<|im_end|>user"] * 12

    variants = [
        ProfileVariant("zero_shot", vague, [False] * 12, index, genre_encoder),
        ProfileVariant("trained", informative, [True] * 12, index, genre_encoder),
    ]
    settings = QualitySettings(candidates=4, bootstrap_samples=100)
    report = assess_profiles(variants, examples, catalog, genre_judge, settings, title="constructed")
    scores = report.numbers["variants"]
    assert report.numbers["chance"] == 0.25
    assert scores["trained"]["reader_accuracy"]["mean"] > 0.5 > scores["zero_shot"]["reader_accuracy"]["mean"]
    assert scores["trained"]["names_genre"]["mean"] == 1.0 and np.isnan(scores["zero_shot"]["grounded_share"]["mean"])
    assert scores["trained"]["steerability_add"]["mean"] > 0 and scores["trained"]["steerability_remove"]["mean"] > 0
    assert scores["zero_shot"]["non_preference_share"]["mean"] > 0.3
    assert scores["trained"]["non_preference_share"]["mean"] == 0.0
    assert scores["trained"]["finished"]["mean"] == 1.0
    # Issue 28's shares: the vague profiles were cut by the cap without ending a sentence.
    assert scores["trained"]["finished_text"]["mean"] == 1.0 and scores["zero_shot"]["finished_text"]["mean"] == 0.0
    assert scores["trained"]["looping"]["mean"] == 0.0
    assert "trained - zero_shot" in report.numbers["differences"]
    tags = report.numbers["registry_tags"]["trained"]
    assert set(tags) >= {"lpt.quality.reader_accuracy", "lpt.quality.steerability_add", "lpt.quality.reader_chance"}

    paths = report.save(tmp_path / "quality")
    assert json.loads(paths["json"].read_text())["variants"]["trained"]["words"]["mean"] > 0
    assert paths["plot"].stat().st_size > 1000
    assert "| Simulated-reader accuracy |" in paths["markdown"].read_text()
    assert "(supported)" in paths["samples"].read_text()
    assert set(report.flat_metrics()) >= {"trained.reader_accuracy", "zero_shot.words"}
    assert "zero_shot.grounded_share" not in report.flat_metrics()


def test_steerability_is_also_compared_through_each_variants_own_recommender():
    catalog = genre_catalog()
    index = genre_index(catalog)
    examples, profiles = report_examples(catalog)

    def deaf_encoder(texts):
        return genre_encoder(["Enjoys films."] * len(texts))

    # The same profiles: one system steers, the other's recommender ignores every edit.
    variants = [
        ProfileVariant("zero_shot", profiles, [True] * 12, index, genre_encoder),
        ProfileVariant("deaf", profiles, [True] * 12, index, deaf_encoder),
    ]
    report = assess_profiles(variants, examples, catalog, genre_judge, QualitySettings(bootstrap_samples=50))

    own = report.numbers["variants"]
    held = report.numbers["held_recommender"]["deaf"]["steerability_add"]
    assert own["zero_shot"]["steerability_add"]["mean"] > 0 == own["deaf"]["steerability_add"]["mean"]
    # Through the deaf recommender the zero-shot profiles are as unsteerable as the variant's.
    assert held["zero_shot"]["mean"] == 0.0 and held["difference"]["mean"] == 0.0
    assert set(report.numbers["held_recommender"]) == {"deaf"}
    assert "recommender held fixed" in report.markdown()


def test_the_asset_assesses_the_first_users_of_the_evaluated_split():
    from lpt_core.profiles import assessed_examples

    examples = pl.DataFrame({"user_id": ["a", "b", "b", "c", "d"], "split": ["test", "test", "test", "val", "test"]})
    assert assessed_examples(examples, "test", 2)["user_id"].to_list() == ["a", "b", "b"]
    assert assessed_examples(examples, "test", None).height == 4


def test_catalogue_ranks_give_ties_their_expected_rank():
    from lpt_core.profile_quality.steerability import catalogue_ranks

    ranks = catalogue_ranks(np.array([[0.9, 0.1, 0.5, 0.5], [1.0, 1.0, 1.0, 0.0]]))
    assert ranks.tolist() == [[1.0, 4.0, 2.5, 2.5], [2.0, 2.0, 2.0, 4.0]]
