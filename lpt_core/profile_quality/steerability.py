"""Steerability: does an edit to a profile move the catalogue the way the edit says?

Defined in docs/steerability.md. In short, for an edit that adds genre g ("They love Horror
movies.") the steerability is the mean rank improvement of g's items minus that of the other
items, as a share of the catalogue; for an edit that removes g (every sentence naming it) it is the
mean rank LOSS of g's items minus that of the others, and so it is for an edit that appends a
dislike of g, which a plain text encoder reads as more about g (lpt_core.dislikes). Each dislike
is phrased as people phrase one, drawn from DISLIKE_PHRASINGS ("No horror movies, please.",
"Horror is not my thing.", ...), not always "They dislike ...". The "dislike_cut_off" edit
appends one to the profile cut off mid-sentence (as a writer stopped by its token limit leaves
it), and is measured against that cut-off profile. Positive = the recommender followed the edit;
0 = the edit did nothing to g in particular. Ranks are over the whole catalogue, computed with
the variant's own encoder and index (cosine plus the item bias, if any).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lpt_core.profile_quality.faithfulness import mentioned_genres
from lpt_core.retrieval import ItemIndex, chunk_rows

EditKind = Literal["add", "remove", "dislike", "dislike_cut_off"]
EDIT_KINDS: tuple[EditKind, ...] = ("add", "remove", "dislike", "dislike_cut_off")
# How the report's dislike edits are phrased, one drawn per edit: `{genre}` in lower case,
# `{Genre}` as the catalogue writes it. Written after lpt_core.dislikes was changed to read more
# than "Dislikes X", and not used to tune it (tests/dislike_phrasings.py holds the held-out set
# the method is tested on).
DISLIKE_PHRASINGS = (
    "They dislike {Genre} {noun}.",
    "Please, no {genre} {noun}.",
    "{Genre} is really not their thing.",
    "They are bored by {genre}.",
    "Stop suggesting {genre} {noun} to them.",
    "They would never pick {genre}.",
    "They have had enough of {genre}.",
    "{Genre} {noun} do nothing for them.",
)
Encode = Callable[[Sequence[str]], np.ndarray]
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


@dataclass(frozen=True)
class ProfileEdit:
    """One edited profile: row of the original, the genre, the kind of edit and the new text."""

    row: int
    genre: str
    kind: EditKind
    text: str
    before: str | None = None  # the text ranked before the edit; None: the row's profile


def add_genre(profile: str, genre: str, noun: str = "movies") -> str:
    """The profile with one sentence appended that says the user loves `genre`."""
    return f"{profile.rstrip()} They love {genre} {noun}."


def dislike_genre(profile: str, genre: str, noun: str = "movies", phrasing: str = DISLIKE_PHRASINGS[0]) -> str:
    """The profile with one sentence appended that says, in `phrasing`, the user dislikes `genre`."""
    return f"{profile.rstrip()} {phrasing.format(genre=genre.lower(), Genre=genre, noun=noun)}"


def cut_off(profile: str) -> str:
    """The profile as a writer stopped mid-sentence leaves it: its last two words, and the
    sentence's end, gone ("They love comedies and dramas." -> "They love comedies")."""
    words = profile.split()
    return " ".join(words[: max(1, len(words) - 2)]).rstrip(".!?,;:")


def remove_genre(profile: str, pattern: re.Pattern[str]) -> str:
    """The profile without every sentence that names the genre `pattern` matches."""
    kept = [s for s in _SENTENCE.findall(profile) if not pattern.search(s)]
    return " ".join(s.strip() for s in kept if s.strip())


def plan_edits(
    profiles: Sequence[str],
    patterns: Mapping[str, re.Pattern[str]],
    edits_per_user: int,
    seed: int,
    noun: str = "movies",
) -> list[ProfileEdit]:
    """Per profile, up to `edits_per_user` additions of genres it does not name, as many removals
    of genres it names, as many dislikes of any genre and as many dislikes appended to the profile
    cut off mid-sentence, each dislike in a phrasing drawn from DISLIKE_PHRASINGS; chosen at random
    (row i's choice depends only on seed and i; each kind is drawn after the ones before it, so
    adding a kind left the others' genres unchanged)."""
    edits = []
    for row, profile in enumerate(profiles):
        rng = np.random.default_rng([seed, row])
        named = mentioned_genres(profile, patterns)
        absent = [g for g in patterns if g not in named]
        for genre in _pick(rng, absent, edits_per_user):
            edits.append(ProfileEdit(row, genre, "add", add_genre(profile, genre, noun)))
        for genre in _pick(rng, named, edits_per_user):
            edits.append(ProfileEdit(row, genre, "remove", remove_genre(profile, patterns[genre])))
        for genre in _pick(rng, list(patterns), edits_per_user):
            phrasing = str(rng.choice(DISLIKE_PHRASINGS))
            edits.append(ProfileEdit(row, genre, "dislike", dislike_genre(profile, genre, noun, phrasing)))
        cut = cut_off(profile)
        for genre in _pick(rng, list(patterns), edits_per_user):
            phrasing = str(rng.choice(DISLIKE_PHRASINGS))
            edits.append(ProfileEdit(row, genre, "dislike_cut_off", dislike_genre(cut, genre, noun, phrasing), cut))
    return edits


def catalogue_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every item in each row of (rows x items) scores: 1 = best, ties get their mean rank
    (the expected rank under random tie-breaking, as in lpt_core.retrieval)."""
    scores = np.asarray(scores)
    ranks = np.empty(scores.shape, dtype=np.float64)
    for row, values in enumerate(-scores):
        ordered = np.sort(values)
        # 1 + #higher + #tied/2, with #higher = left and #tied = right - left - 1 (itself excluded).
        left = np.searchsorted(ordered, values, side="left")
        right = np.searchsorted(ordered, values, side="right")
        ranks[row] = (left + right + 1) / 2.0
    return ranks


def edit_steerability(
    index: ItemIndex,
    encode: Encode,
    profiles: Sequence[str],
    edits: Sequence[ProfileEdit],
    genre_items: Mapping[str, np.ndarray],
) -> np.ndarray:
    """Steerability of each edit (docs/steerability.md), given each genre's items as a boolean
    mask over the index's catalogue order."""
    values = np.empty(len(edits), dtype=np.float64)
    step = chunk_rows(len(index))
    for start in range(0, len(edits), step):
        chunk = edits[start : start + step]
        before = catalogue_ranks(index.exact_scores(encode([_before(e, profiles) for e in chunk])))
        after = catalogue_ranks(index.exact_scores(encode([e.text for e in chunk])))
        for offset, edit in enumerate(chunk):
            in_genre = np.asarray(genre_items[edit.genre], dtype=bool)
            if in_genre.shape != (len(index),) or in_genre.all() or not in_genre.any():
                raise ValueError(f"genre {edit.genre!r}: needs a mask over {len(index)} items with both kinds")
            moved_up = before[offset] - after[offset]
            shift = moved_up[in_genre].mean() - moved_up[~in_genre].mean()
            values[start + offset] = (shift if edit.kind == "add" else -shift) / len(index)
    return values


def _before(edit: ProfileEdit, profiles: Sequence[str]) -> str:
    return profiles[edit.row] if edit.before is None else edit.before


def row_means(edits: Sequence[ProfileEdit], values: np.ndarray, rows: int, kind: EditKind) -> np.ndarray:
    """Per profile row: the mean steerability of its edits of `kind`, NaN where it has none."""
    sums, counts = np.zeros(rows), np.zeros(rows)
    for edit, value in zip(edits, values, strict=True):
        if edit.kind == kind:
            sums[edit.row] += value
            counts[edit.row] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _pick(rng: np.random.Generator, genres: list[str], count: int) -> list[str]:
    if not genres or count < 1:
        return []
    return rng.choice(genres, size=min(count, len(genres)), replace=False).tolist()
