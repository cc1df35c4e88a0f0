"""Held-out negative preferences: how people say they do not want a genre (issue 31.13).

Written before the dislike method (lpt_core.dislikes) was changed to handle more than "Dislikes X",
and never used to tune it: tests/test_dislikes.py measures the method on them, so a number
reported for them is a number on phrasings the method was not written against. Do not edit these
to make a test pass; add new phrasings to the method's own development cases instead.

`{genre}` is the genre in lower case ("horror"), `{Genre}` capitalised ("Horror").
"""

HELD_OUT_PHRASINGS = (
    "No {genre} movies, please.",
    "{Genre} is not my thing.",
    "Stop recommending {genre}.",
    "Please, no more {genre}.",
    "I can't stand {genre} films.",
    "Not into {genre} at all.",
    "{Genre} bores me.",
    "Keep the {genre} away from me.",
    "I'd rather not watch {genre}.",
    "Skip anything {genre}.",
    "Nothing {genre}, thanks.",
    "{Genre} movies are not for me.",
    "I never watch {genre}.",
    "I'm not a {genre} person.",
    "Zero interest in {genre}.",
    "{Genre}? No thanks.",
    "Anything but {genre}.",
    "I'm tired of {genre}.",
    "Don't show me {genre} movies.",
    "Spare me the {genre}.",
    "{Genre} leaves me cold.",
    "I hate {genre}.",
    "I'm done with {genre} films.",
    "No {genre}.",
    "{Genre} is a hard pass for me.",
    "Please avoid {genre}.",
    "I really don't like {genre}.",
    "Not a fan of {genre} at all.",
    "{Genre} films aren't for me.",
    "Less {genre}, please.",
    "I would prefer no {genre}.",
    "Please don't recommend {genre}.",
    "{Genre} just doesn't appeal to me.",
    "Can we skip the {genre}?",
    "I have no interest in {genre} movies.",
    "Enough with the {genre}.",
)

# Profiles cut off mid-sentence, as a writer stopped by its token limit leaves them.
CUT_OFF_PROFILES = (
    "This user enjoys light-hearted comedies and romantic films, with a soft spot for classic",
    "They like westerns and stories of the American frontier, especially the ones where",
    "A fan of thoughtful dramas and documentaries who often rates",
)


def phrased(template: str, genre: str) -> str:
    return template.format(genre=genre.lower(), Genre=genre.capitalize())
