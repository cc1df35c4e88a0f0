"""A profile's dislikes push their items down, where a plain text encoder pushes them up."""

from __future__ import annotations

import numpy as np
import pytest
from dislike_phrasings import CUT_OFF_PROFILES, HELD_OUT_PHRASINGS, phrased

from lpt_core import paths
from lpt_core.config import ModelsConfig
from lpt_core.dislikes import DISLIKE_WEIGHT, Preferences, encode_profiles, split_preferences
from lpt_core.models import load_encoder
from lpt_core.retrieval import TextEncoder

GENRE_ITEMS = {
    "Horror": ["Scream (1996)", "The Shining (1980)", "Alien (1979)", "Halloween (1978)", "The Exorcist (1973)",
               "Night of the Living Dead (1968)", "Candyman (1992)", "Psycho (1960)"],
    "Comedy": ["Groundhog Day (1993)", "Airplane! (1980)", "Clerks (1994)", "Annie Hall (1977)",
               "Some Like It Hot (1959)", "Big (1988)", "Tootsie (1982)", "Dumb & Dumber (1994)"],
    "Romance": ["Casablanca (1942)", "Sense and Sensibility (1995)", "Sleepless in Seattle (1993)",
                "Roman Holiday (1953)", "Notting Hill (1999)", "Titanic (1997)", "Ghost (1990)", "Emma (1996)"],
    "Western": ["Unforgiven (1992)", "Tombstone (1993)", "High Noon (1952)", "Shane (1953)",
                "Rio Bravo (1959)", "Dances with Wolves (1990)", "The Wild Bunch (1969)", "Stagecoach (1939)"],
}
PROFILES = [
    "This user enjoys light-hearted comedies and romantic films, with a soft spot for classic dramas.",
    "They like westerns and stories of the American frontier.",
]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("They love horror.", Preferences("They love horror.", ())),
        ("Dislikes horror.", Preferences("", ("horror",))),
        ("Enjoys comedies. No horror movies, please.", Preferences("Enjoys comedies.", ("horror movies",))),
        ("They enjoy comedies and dislike horror or gore.", Preferences("They enjoy comedies", ("horror or gore",))),
        ("Likes comedies, but is not a fan of musicals.", Preferences("Likes comedies", ("musicals",))),
        ("They are not into musicals at all, while they love westerns.",
         Preferences("they love westerns.", ("musicals",))),
        ("They don't really enjoy romance; war films are a favourite.",
         Preferences("war films are a favourite.", ("romance",))),
        # A negation is a dislike where it opens the clause or stands by a word of preference.
        ("They have no patience for slow films.", Preferences("They have no patience for slow films.", ())),
        ("Not only comedies but also dramas.", Preferences("Not only comedies also dramas.", ())),
    ],
)
def test_a_profile_splits_into_what_it_likes_and_what_it_dislikes(profile, expected):
    assert split_preferences(profile) == expected


# Development cases: the phrasings the method was written against (the held-out ones are in
# tests/dislike_phrasings.py and measured below).
@pytest.mark.parametrize(
    ("phrasing", "topic"),
    [
        ("Musicals are not really my cup of tea.", "Musicals"),
        ("Please stop suggesting war films.", "war films"),
        ("I can't bear slasher movies.", "slasher movies"),
        ("Never liked musicals.", "musicals"),
        ("Westerns bore me to tears.", "Westerns tears"),
        ("Keep musicals off my list.", "musicals"),
        ("Tired of superhero movies.", "superhero movies"),
        ("Romance is not for me.", "Romance"),
        ("Hard pass on musicals.", "musicals"),
        ("Anything except musicals.", "musicals"),
        ("They avoid anything with zombies.", "zombies"),
    ],
)
def test_a_dislike_is_read_as_people_phrase_it_after_a_whole_or_a_cut_off_profile(phrasing, topic):
    for profile in ("They enjoy comedies.", "They enjoy comedies and dramas with a soft spot for classic"):
        assert split_preferences(f"{profile} {phrasing}") == Preferences(profile, (topic,))


@pytest.mark.parametrize(
    "profile",
    [
        "They enjoy films that never fail to surprise.",
        "A viewer who can't get enough of noir.",
        "Their favourites include No Country for Old Men and Fargo.",
        "Non-stop action movies are a favourite.",
        "They can't stop watching thrillers.",
        "The user rated it as not the least of their films.",
    ],
)
def test_negations_that_say_what_the_user_likes_are_no_dislikes(profile):
    assert split_preferences(profile) == Preferences(profile, ())


def _read_as_dislike(profile: str, template: str, genre: str = "horror") -> bool:
    parts = split_preferences(f"{profile} {phrased(template, genre)}")
    return any(genre in topic.lower() for topic in parts.disliked) and genre not in parts.liked.lower()


@pytest.mark.parametrize("profiles", [tuple(PROFILES), CUT_OFF_PROFILES], ids=["whole", "cut_off"])
def test_held_out_phrasings_are_read_as_dislikes(profiles):
    """Issue 31.13: only "Dislikes X" was understood; a dislike after a profile cut off mid-sentence
    was read as liked. Before the change 22% (whole profiles) and 17% (cut off) of the held-out
    phrasings were read as dislikes; 97% after."""
    read = [_read_as_dislike(profile, template) for template in HELD_OUT_PHRASINGS for profile in profiles]
    assert np.mean(read) >= 0.9


def _bag_encoder(texts):
    words = ["comedies", "horror", "westerns"]
    vectors = np.array([[float(w in t.lower()) for w in words] + [0.5] for t in texts], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_profile_without_dislikes_keeps_its_plain_embedding_exactly():
    profiles = ["Enjoys comedies.", "Dislikes horror.", "Loves westerns and horror."]

    queries = encode_profiles(_bag_encoder, profiles)

    np.testing.assert_array_equal(queries[[0, 2]], _bag_encoder([profiles[0], profiles[2]]))
    assert queries[1, 1] < 0  # all dislike: the query points away from horror
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-6)


def test_a_dislike_lowers_the_score_of_its_topic_below_the_unedited_profile():
    plain, negated = encode_profiles(_bag_encoder, ["Enjoys comedies.", "Enjoys comedies but dislikes horror."])
    horror_item = _bag_encoder(["horror"])[0]
    assert negated @ horror_item < plain @ horror_item


def test_each_text_is_embedded_once_and_a_profile_with_dislikes_only_through_its_parts():
    seen = []

    def recording(texts):
        seen.extend(texts)
        return _bag_encoder(texts)

    profiles = ["Enjoys comedies.", "Enjoys comedies but dislikes horror.", "Dislikes westerns."]
    queries = encode_profiles(recording, profiles)

    assert sorted(seen) == sorted(["Enjoys comedies.", "Enjoys comedies", "horror", "westerns"])
    liked, topic = _bag_encoder(["Enjoys comedies", "horror"])
    expected = liked - DISLIKE_WEIGHT * topic
    np.testing.assert_allclose(queries[1], expected / np.linalg.norm(expected), rtol=1e-6)


@pytest.fixture(scope="module")
def horror_mean_rank():
    """Mean rank of GENRE_ITEMS' horror films under each query, on the bundled encoder; and it."""
    if not (paths.models_dir() / "all-minilm-l6-v2").is_dir():
        pytest.skip("default models not fetched (make setup)")
    encoder = TextEncoder(load_encoder("all-minilm-l6-v2", ModelsConfig(device="cpu", dtype="float32")))
    texts = [f"Title: {title}\nCategory: {genre}" for genre, titles in GENRE_ITEMS.items() for title in titles]
    is_horror = np.array([genre == "Horror" for genre, titles in GENRE_ITEMS.items() for _ in titles])
    items = encoder.encode(texts)

    def mean_rank(queries):
        ranks = np.argsort(np.argsort(-(queries @ items.T), axis=1), axis=1)
        return ranks[:, is_horror].mean(axis=1)

    return mean_rank, encoder


def test_on_the_bundled_encoder_dislikes_horror_moves_horror_films_down(horror_mean_rank):
    """The defect as filed: appending "Dislikes horror." raised horror in the ranking."""
    mean_rank, encoder = horror_mean_rank
    edited = [f"{p} Dislikes horror." for p in PROFILES]

    before = mean_rank(encoder.encode(PROFILES))
    plain_after = mean_rank(encoder.encode(edited))
    after = mean_rank(encode_profiles(encoder.encode, edited))

    assert np.all(plain_after < before)  # the filed defect: a plain encoding moves horror UP
    assert np.all(after > before)  # ours moves it down


@pytest.mark.parametrize("profiles", [tuple(PROFILES), CUT_OFF_PROFILES], ids=["whole", "cut_off"])
def test_on_the_bundled_encoder_held_out_dislikes_move_horror_films_down(horror_mean_rank, profiles):
    """Issue 31.13 on the held-out phrasings: before the change horror went down for 22% (whole
    profiles) and 17% (cut off) of (profile, phrasing) pairs, and up by 10.6 and 12.4 places of
    32 on average; after, down for 97%, by 5.6 and 5.4 places."""
    mean_rank, encoder = horror_mean_rank
    edited = [f"{profile} {phrased(template, 'horror')}" for template in HELD_OUT_PHRASINGS for profile in profiles]
    before = np.tile(mean_rank(encoder.encode(list(profiles))), len(HELD_OUT_PHRASINGS))
    after = mean_rank(encode_profiles(encoder.encode, edited))
    assert np.mean(after > before) >= 0.9 and np.mean(after - before) > 3
