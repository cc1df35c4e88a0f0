"""Cheap signals of whether a generated profile is a summary or a copy of the prompt's history.

Small chat models asked to summarise a list often reproduce the list instead ("Title: ...",
"Rating from the user: 4"). Such text is not a profile a person would read or edit, so the share
of copying profiles is reported next to every batch of profiles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Labels the item texts and history blocks of lpt_core.text start their lines with.
FIELD_LINE = re.compile(
    r"^\s*[-*]?\s*(Title|Category|Description|Price|Rating from the user|Review from the user)\s*:",
    re.MULTILINE | re.IGNORECASE,
)


def bare_title(title: str) -> str:
    """A title without its trailing "(year)"."""
    # "Toy Story (1995)" -> "Toy Story": a summary naming a film rarely repeats its year.
    return re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()


def copies_history(profile: str, history_titles: Sequence[str]) -> bool:
    """True when the profile repeats the history's field lines, or names most history titles."""
    if FIELD_LINE.search(profile):
        return True
    titles = [bare_title(t) for t in history_titles if bare_title(t)]
    if not titles:
        return False
    named = sum(title.lower() in profile.lower() for title in titles)
    return named > len(titles) / 2


def copy_share(profiles: Sequence[str], histories_titles: Sequence[Sequence[str]]) -> float:
    """Share of profiles that copy their history (0 for no profiles)."""
    if not profiles:
        return 0.0
    flags = [copies_history(p, t) for p, t in zip(profiles, histories_titles, strict=True)]
    return sum(flags) / len(flags)
