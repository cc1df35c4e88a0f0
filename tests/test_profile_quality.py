from lpt_core.profile_quality import copies_history, copy_share

HISTORY = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Alien (1979)"]


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
