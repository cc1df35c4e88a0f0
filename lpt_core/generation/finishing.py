"""Finishing a generated profile: what a person reads must be a finished text.

A small writer stopped by max_new_tokens ends mid-sentence, and a greedy one can fall into a loop
("... horror, action, horror, comedy, horror, action, ..."), which runs on to the token cap. Both
are cut back here, on the text and whether the cap cut it, so the transformers and vLLM backends,
the training rollouts and the reward of TRL's completions all finish a profile identically:

1. a loop is where a word trigram occurs for the LOOP_OCCURRENCES-th time; the text is cut there
   and trimmed back to its last complete sentence (so a phrase said twice across sentences, "they
   are a fan of ... and a fan of", keeps both sentences);
2. a text the cap cut is trimmed back to its last complete sentence;
3. a text with no complete sentence left (the cap or the loop fell in its first sentence) is cut
   where the loop started repeating (the trigram's second occurrence), or at its last clause
   boundary, without the words that cannot end one ("and", "of"...), and closed with a full
   stop: "a mix of action, comedy, horror, action, horror, action, ..." becomes "a mix of action,
   comedy, horror, action."

A text the model ended itself is the model's choice and is left as it is unless it loops; a
finished text is left as it is, so finishing twice changes nothing.
"""

from __future__ import annotations

import re

# Words as the quality report's repetition measure reads them (lpt_core.profile_quality.readability).
WORD = re.compile(r"\w+(?:['-]\w+)*")
# A sentence end: terminal punctuation, closing quotes or brackets, then a space or the end.
SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
FINAL_SENTENCE_END = re.compile(SENTENCE_END.pattern.removesuffix(r"(?=\s|$)") + "$")
# Words whose full stop does not end a sentence ("Mr. Smith", "e.g. thrillers", initials).
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "mt", "e.g", "i.e", "cf"})
_LAST_WORD = re.compile(r"([\w.]+)\.$")
# Where a clause ends inside a sentence: a text cut inside its first sentence closes there.
CLAUSE_END = re.compile(r"[,;:\u2013\u2014]")
# Words a sentence does not end on: dropped from the end of a text closed at a clause boundary.
_DANGLING = frozenset(
    "a an the and or but nor with of to for from in on at by as that which who whose like including such "
    "their his her its this these those".split()
)
# The third occurrence of a word trigram marks a loop; prose repeats a trigram twice at most
# ("they also enjoy ... they also enjoy") in a profile of a few sentences.
LOOP_OCCURRENCES = 3


def finish_profile(text: str, *, cut: bool) -> str:
    """`text` with any loop cut off and, if it loops or `cut` (max_new_tokens stopped it) and it
    does not end a sentence, trimmed back to a finished sentence (see the module docstring)."""
    text = text.strip()
    loop = _loop_repeats(text)
    if loop is None and (not cut or not text or ends_sentence(text)):
        return text
    kept = text if loop is None else text[: loop[1]]
    last_end = _last_sentence_end(kept)
    if last_end is not None:
        return kept[:last_end]
    return _close_at_clause(text if loop is None else text[: loop[0]])


def ends_sentence(text: str) -> bool:
    """Whether `text` (stripped) ends a sentence: terminal punctuation that no abbreviation explains."""
    text = text.rstrip()
    return FINAL_SENTENCE_END.search(text) is not None and not _is_abbreviation(text)


def _loop_repeats(text: str) -> tuple[int, int] | None:
    """Where the first word trigram to occur LOOP_OCCURRENCES times in `text` occurs for the second
    and for the last of those times (character offsets), or None if none does."""
    words = list(WORD.finditer(text))
    lowered = [match.group().lower() for match in words]
    starts: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(words) - 2):
        occurrences = starts.setdefault(tuple(lowered[i : i + 3]), [])
        occurrences.append(words[i].start())
        if len(occurrences) == LOOP_OCCURRENCES:
            return occurrences[1], occurrences[-1]
    return None


def _last_sentence_end(text: str) -> int | None:
    ends = [m.end() for m in SENTENCE_END.finditer(text) if not _is_abbreviation(text[: m.end()])]
    return ends[-1] if ends else None


def _is_abbreviation(text: str) -> bool:
    """Whether the full stop ending `text` belongs to an abbreviation or an initial."""
    match = _LAST_WORD.search(text)
    if match is None:
        return False
    word = match.group(1)
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def _close_at_clause(text: str) -> str:
    """A text with no finished sentence, cut at its last clause boundary (if any) and closed with
    a full stop."""
    clause_ends = [m.start() for m in CLAUSE_END.finditer(text)]
    kept = (text[: clause_ends[-1]] if clause_ends else text).rstrip(" ,;:.-\u2013\u2014")
    words = list(WORD.finditer(kept))
    while len(words) > 1 and words[-1].group().lower() in _DANGLING:
        kept = kept[: words.pop().start()].rstrip(" ,;:.-\u2013\u2014")
    return kept + "."
