"""What a profile says the user does NOT want, and queries that push those items down.

A text encoder reads "Dislikes horror." as a text about horror: appended to a profile it moved
horror films up, not down (all-MiniLM-L6-v2 on MovieLens: 0 -> 9-17 horror films in the top 20 of
three test profiles, about as many as "Loves horror." gave). So a profile is split into what it
likes and what it dislikes before it is encoded:

- a dislike starts at a negative cue ("dislikes", "doesn't enjoy", "not a fan of", "avoids",
  "no ... please", ...) and runs to the end of its part of the sentence, where parts are separated
  by contrast ("but", "while", "although", ";"); "They enjoy comedies and dislike horror or gore"
  likes "They enjoy comedies" and dislikes "horror or gore";
- the query is the embedding of the liked text minus DISLIKE_WEIGHT times the mean embedding of
  the disliked topics, renormalised. A profile with no cue gets its plain embedding, bit for bit.

With the weight at 0.5, "Dislikes horror." took the same three profiles to 0 horror films in the
top 20 and moved horror's mean rank from about 1,000 to about 1,480 of 1,682
(tests/test_dislikes.py checks the direction on the bundled encoder). Training's contrastive phase
still encodes profiles whole: its gradients flow through the plain embedding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DISLIKE_WEIGHT = 0.5
Encode = Callable[[Sequence[str]], np.ndarray]

_NEGATED_VERB = (
    r"(?:like|likes|enjoy|enjoys|care for|cares for|want|wants|go for|goes for"
    r"|(?:a )?(?:big |huge )?fan of|fond of|interested in|into|keen on)"
)
_CUE = re.compile(
    r"\b(?:"
    r"dislike[sd]?|hate[sd]?|detest[sd]?|avoid(?:s|ed)?|(?:can't|cannot|can not) stand"
    rf"|(?:doesn't|does not|don't|do not|didn't|did not|isn't|is not|aren't|are not|not)"
    rf" (?:really |particularly |much |very |that )?{_NEGATED_VERB}"
    r"|(?:less|not very|not too) (?:interested in|keen on|fond of)"
    r"|steers? clear of|stays? away from|^\s*no(?= \w)"
    r")\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CONTRAST = re.compile(r"\s*(?:;|,?\s+\b(?:but|while|whereas|although|though|yet|however)\b,?)\s*", re.IGNORECASE)
_FILLER = re.compile(r"\b(?:please|at all)\b|[.!?,;]+", re.IGNORECASE)
_DANGLING = re.compile(r"(?:[\s,;]+|\s+\b(?:and|or|but)\b)+$", re.IGNORECASE)
# What is left before a cue when the cue was the clause's verb ("They are | not into musicals").
_SUBJECT_ONLY = re.compile(
    r"^(?:\s*\b(?:the|this|user|viewer|they|he|she|is|are|was|were|do|does|did|has|have|also|generally"
    r"|usually|really|tends?|to|seems?|and)\b)*\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Preferences:
    """A profile split into the text of what the user likes and the topics they do not want."""

    liked: str
    disliked: tuple[str, ...]


def split_preferences(profile: str) -> Preferences:
    """`profile` as liked text plus disliked topics (see the module docstring)."""
    liked, disliked = [], []
    for sentence in _SENTENCE_END.split(profile.strip()):
        for part in _CONTRAST.split(sentence):
            cue = _CUE.search(part)
            if cue is None:
                liked.append(part)
                continue
            before = _DANGLING.sub("", part[: cue.start()])
            if not _SUBJECT_ONLY.match(before):
                liked.append(before)
            topic = " ".join(_FILLER.sub(" ", part[cue.end() :]).split())
            if topic:
                disliked.append(topic)
    liked_text = " ".join(p.strip() for p in liked if p.strip())
    return Preferences(liked_text, tuple(disliked))


def encode_profiles(encode: Encode, profiles: Sequence[str], dislike_weight: float = DISLIKE_WEIGHT) -> np.ndarray:
    """One L2-normalised query per profile: the plain embedding of a profile with no dislike; for
    one with dislikes, embedding(liked) - dislike_weight * mean(embedding(topic)), renormalised.
    Each text is embedded once: a profile with dislikes only through its liked part."""
    split = [split_preferences(profile) for profile in profiles]
    if not any(parts.disliked for parts in split):
        return np.array(encode(list(profiles)), dtype=np.float32, copy=True)
    topics = [topic for parts in split for topic in parts.disliked]
    topic_vectors = np.asarray(encode(topics), dtype=np.float32)
    queries = np.zeros((len(profiles), topic_vectors.shape[1]), dtype=np.float32)
    embedded = [row for row, parts in enumerate(split) if parts.liked or not parts.disliked]
    if embedded:
        texts = [split[row].liked if split[row].disliked else profiles[row] for row in embedded]
        queries[embedded] = encode(texts)
    start = 0
    for row, parts in enumerate(split):
        if not parts.disliked:
            continue
        count = len(parts.disliked)
        query = queries[row] - dislike_weight * topic_vectors[start : start + count].mean(axis=0)
        queries[row] = query / max(float(np.linalg.norm(query)), 1e-12)
        start += count
    return queries
