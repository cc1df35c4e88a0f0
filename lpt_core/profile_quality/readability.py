"""Readability signals of one profile: length, repetition, whether it is a finished text, and how
much of it is not a profile.

A profile is finished when the model ended its turn or its text ends a sentence (a profile the
token cap cut, trimmed by lpt_core.generation.finishing), and looping when fewer than
LOOPING_BELOW of its word trigrams are distinct ("... horror, horror, horror ..."): the two shares
issue 28 holds the product to.

"Not about preferences" is text a reader would have to skip: chat-template tokens, anything the
model wrote after its turn should have ended (a new "user" turn, a second answer), and lines that
copy the prompt's item fields ("Title: ...", "Rating from the user: 4") or fragments of its
compact lines ("(1995) [Action, Crime]", "rated 4.0/5"). The share counts
characters, so one stray token in a long profile weighs little and a copied list weighs a lot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lpt_core.generation.finishing import WORD, ends_sentence
from lpt_core.profile_quality.copying import FIELD_LINE, copies_history

# Turn-end markers of common chat templates (ChatML, Llama 3, Gemma, Phi, Llama 2/Mistral).
TURN_END = re.compile(r"<\|im_end\|>|<\|eot_id\|>|<end_of_turn>|<\|end\|>|<\|endoftext\|>|</s>")
# Any template token: <|...|> markers, Gemma's turn tags, Llama 2's [INST] and <s>.
TEMPLATE_TOKEN = re.compile(r"<\|[^<>|\s]{1,40}\|>|<(?:start|end)_of_turn>|</?s>|\[/?INST\]")
# Fragments of the compact "lines" history layout: "Heat (1995) [Action, Crime]: rated 4.0/5".
COPIED_FRAGMENT = re.compile(r"\(\d{4}\)\s*\[[^\]\n]*\]|rated \d+(?:\.\d+)?/5")
# A profile whose distinct word trigram ratio is below this loops.
LOOPING_BELOW = 0.7


@dataclass(frozen=True)
class Readability:
    """Readability signals of one profile (see the module docstring)."""

    words: int
    distinct_trigram_ratio: float
    looping: bool
    non_preference_share: float
    copies_history: bool


def distinct_trigram_ratio(text: str) -> float:
    """Distinct word trigrams / all word trigrams (lower-cased); 1.0 when there are none.

    A model stuck in a loop ("He likes action. He likes action. ...") scores near 0.
    """
    words = [w.lower() for w in WORD.findall(text)]
    trigrams = list(zip(words, words[1:], words[2:]))
    if not trigrams:
        return 1.0
    return len(set(trigrams)) / len(trigrams)


def is_finished(text: str, ended_turn: bool) -> bool:
    """Whether a profile is a finished text: the model ended its turn, or the text ends a sentence
    (one the token cap cut and finishing trimmed, lpt_core.generation.finishing)."""
    return ended_turn or ends_sentence(text)


def is_looping(text: str) -> bool:
    """Whether `text` repeats itself: fewer than LOOPING_BELOW of its word trigrams distinct."""
    return distinct_trigram_ratio(text) < LOOPING_BELOW


def non_preference_share(text: str) -> float:
    """Share of the text's non-space characters that are template tokens, leftovers after the
    first turn-end marker, copied field lines or copied history fragments; 0.0 for an empty text."""
    total = _visible_length(text)
    if total == 0:
        return 0.0
    end = TURN_END.search(text)
    body, leftover = (text[: end.start()], text[end.start() :]) if end else (text, "")
    skipped = _visible_length(leftover) + sum(_visible_length(m.group()) for m in TEMPLATE_TOKEN.finditer(body))
    body = TEMPLATE_TOKEN.sub(" ", body)
    skipped += sum(_visible_length(line) for line in body.splitlines() if FIELD_LINE.match(line))
    body = "\n".join(line for line in body.splitlines() if not FIELD_LINE.match(line))
    skipped += sum(_visible_length(m.group()) for m in COPIED_FRAGMENT.finditer(body))
    return min(1.0, skipped / total)


def readability(profile: str, history_titles: Sequence[str]) -> Readability:
    """All readability signals of `profile`, whose user's history holds `history_titles`."""
    return Readability(
        words=len(WORD.findall(profile)),
        distinct_trigram_ratio=distinct_trigram_ratio(profile),
        looping=is_looping(profile),
        non_preference_share=non_preference_share(profile),
        copies_history=copies_history(profile, history_titles),
    )


def _visible_length(text: str) -> int:
    return sum(not c.isspace() for c in text)
