"""Steering a recommendation by editing the profile text: the method's "editable profile".

An edit is one line, "add: <text>" or "remove: <term>":
- add appends <text> as a sentence (capitalised, ending with a full stop, as is the profile);
- remove drops every clause that mentions <term> (case-insensitive, whole words), where a
  sentence's clauses are the parts between commas, semicolons and "and"/"but"/"or"; a sentence
  whose first clause (the one holding its subject) mentions the term is dropped whole, since what
  would remain ("and comedies.") is no sentence. A removal that would leave no profile at all is
  an error that says so (an empty profile cannot be ranked).

"add: dislikes horror" works too: the served model reads dislikes as such (lpt_core.dislikes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_SEPARATOR = re.compile(r"(,\s*|;\s*|\s+(?:and|but|or)\s+)", re.IGNORECASE)
OPERATIONS = ("add", "remove")


def edit_profile(profile: str, edits: Sequence[str]) -> str:
    """`profile` with `edits` ("add: loves documentaries", "remove: horror") applied in order."""
    for edit in edits:
        operation, _, argument = edit.partition(":")
        operation, argument = operation.strip().lower(), argument.strip()
        if operation not in OPERATIONS or not argument:
            raise ValueError(f"edit {edit!r}: expected 'add: <text>' or 'remove: <term>'")
        profile = _add(profile, argument) if operation == "add" else _remove(profile, argument)
        if not profile:
            raise ValueError(
                f"edit {edit!r}: every sentence of the profile mentions {argument!r}, so nothing is left; "
                f"say what the user wants instead ('add: ...'), or 'add: dislikes {argument}'"
            )
    return profile


def _add(profile: str, sentence: str) -> str:
    sentence = sentence[0].upper() + sentence[1:]
    profile = profile.rstrip()
    return " ".join(_closed(s) for s in (profile, sentence) if s)


def _closed(sentence: str) -> str:
    return sentence if sentence[-1] in ".!?" else f"{sentence}."


def _remove(profile: str, term: str) -> str:
    mentions = re.compile(rf"\b{re.escape(term)}\b", re.IGNORECASE)
    kept = [_without_clauses(s, mentions) for s in _SENTENCE_END.split(profile.strip()) if s]
    return " ".join(s for s in kept if s)


def _without_clauses(sentence: str, mentions: re.Pattern[str]) -> str:
    """The sentence minus its clauses that mention the term; "" when its first clause does."""
    if not mentions.search(sentence):
        return sentence
    parts = _CLAUSE_SEPARATOR.split(sentence)  # clause, separator, clause, ...
    clauses, separators = parts[0::2], parts[1::2]
    if mentions.search(clauses[0]):
        return ""
    kept = clauses[0]
    for separator, clause in zip(separators, clauses[1:], strict=True):
        if not mentions.search(clause):
            kept += separator + clause
    ending = sentence.rstrip()[-1]
    if ending in ".!?" and not kept.endswith(ending):
        kept = kept.rstrip(" ,;") + ending
    return kept
