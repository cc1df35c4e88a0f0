"""Is what a profile says about genres grounded in the user's history?

The vocabulary is the catalogue's own categories (MovieLens genres, Amazon categories). A genre
the profile names is SUPPORTED when at least one history item carries it, UNSUPPORTED otherwise;
a profile's grounded share is supported / named, undefined (NaN) when it names no genre. The rule
is deliberately literal, so a person can check it: genre_sample_markdown() writes profiles with
each named genre marked, to be read next to the automatic number.

Known blind spots, visible in the sample: a negated genre ("not a horror fan") counts as a claim
about horror, and a genre word inside an unlisted title ("Star Wars" names "war") counts too.
Titles of the user's own history items are removed before matching for that reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lpt_core.profile_quality.copying import bare_title

# Other ways profiles name a category; the category's own name, plural and hyphen/space variants
# are always matched (genre_patterns).
GENRE_ALIASES: dict[str, tuple[str, ...]] = {
    "sci-fi": ("science fiction", "science-fiction"),
    "children's": ("children", "kids", "family"),
    "animation": ("animated", "cartoon", "cartoons"),
    "romance": ("romantic", "rom-com", "rom-coms"),
    "film-noir": ("noir",),
    "comedy": ("comedic",),
}
# Categories that say nothing about taste.
IGNORED_CATEGORIES = frozenset({"unknown", "(no genres listed)", ""})
# A category most of the catalogue carries ("Movies & TV") would be "supported" for everyone.
MAX_CATALOGUE_SHARE = 0.5
_INVERTED_ARTICLE = re.compile(r"^(.*), (The|A|An|La|Le|Les|Il|Das|Der|Die|El)$")


@dataclass(frozen=True)
class GenreGrounding:
    """The genres one profile names, split by whether the user's history supports them."""

    supported: tuple[str, ...]
    unsupported: tuple[str, ...]

    @property
    def mentioned(self) -> tuple[str, ...]:
        return self.supported + self.unsupported

    @property
    def grounded_share(self) -> float:
        """Supported / named genres; NaN when the profile names none."""
        if not self.mentioned:
            return float("nan")
        return len(self.supported) / len(self.mentioned)


def genre_vocabulary(item_categories: Sequence[Sequence[str] | None]) -> list[str]:
    """The catalogue's categories that can tell users apart: not ignored, and held by at most
    MAX_CATALOGUE_SHARE of the items (given one list of categories per catalogue item)."""
    counts: dict[str, int] = {}
    for categories in item_categories:
        for category in set(categories or []):
            counts[category] = counts.get(category, 0) + 1
    limit = MAX_CATALOGUE_SHARE * len(item_categories)
    return sorted(g for g, n in counts.items() if g.strip().lower() not in IGNORED_CATEGORIES and n <= limit)


def genre_patterns(genres: Iterable[str]) -> dict[str, re.Pattern[str]]:
    """One case-insensitive, whole-word pattern per genre, matching its name, plural, hyphen and
    space variants and GENRE_ALIASES."""
    return {genre: _pattern(genre) for genre in genres}


def mentioned_genres(
    profile: str, patterns: Mapping[str, re.Pattern[str]], history_titles: Sequence[str] = ()
) -> list[str]:
    """Genres named in `profile`, in vocabulary order, after removing the history's titles."""
    text = _without_titles(profile, history_titles)
    return [genre for genre, pattern in patterns.items() if pattern.search(text)]


def ground_genres(
    profile: str,
    history_genres: Iterable[str],
    patterns: Mapping[str, re.Pattern[str]],
    history_titles: Sequence[str] = (),
) -> GenreGrounding:
    """Which genres named in `profile` some history item carries (`history_genres`)."""
    held = set(history_genres)
    named = mentioned_genres(profile, patterns, history_titles)
    return GenreGrounding(
        supported=tuple(g for g in named if g in held),
        unsupported=tuple(g for g in named if g not in held),
    )


def genre_sample_markdown(
    profiles: Sequence[str], groundings: Sequence[GenreGrounding], user_ids: Sequence[str], count: int = 10
) -> str:
    """The first `count` profiles naming a genre, each with its genres marked, for a hand check."""
    blocks = []
    for profile, grounding, user in zip(profiles, groundings, user_ids, strict=True):
        if not grounding.mentioned:
            continue
        marks = [f"{g} (supported)" for g in grounding.supported]
        marks += [f"**{g} (unsupported)**" for g in grounding.unsupported]
        quoted = "\n> ".join(profile.strip().splitlines())
        blocks.append(f"#### user {user}\n\n> {quoted}\n\nGenres named: {', '.join(marks)}\n")
        if len(blocks) == count:
            break
    return "\n".join(blocks) if blocks else "_No profile names a genre of the catalogue._\n"


def _pattern(genre: str) -> re.Pattern[str]:
    base = genre.strip().lower()
    forms = {base, *GENRE_ALIASES.get(base, ())}
    for form in list(forms):
        forms |= {form.replace("-", " "), form.replace("-", "")}
    for form in list(forms):
        if form.endswith("y") and not form.endswith(("ay", "ey", "oy")):
            forms.add(form[:-1] + "ies")
        elif not form.endswith(("s", "'")):
            forms.add(form + "s")
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def _without_titles(profile: str, titles: Sequence[str]) -> str:
    for title in titles:
        for form in _title_forms(title):
            profile = re.sub(re.escape(form), " ", profile, flags=re.IGNORECASE)
    return profile


def _title_forms(title: str) -> list[str]:
    # MovieLens writes "Aristocats, The"; a profile writes "The Aristocats".
    bare = bare_title(title)
    inverted = _INVERTED_ARTICLE.match(bare)
    forms = [bare, f"{inverted.group(2)} {inverted.group(1)}"] if inverted else [bare]
    return [f for f in forms if f]
