"""What a profile says the user does NOT want, and queries that push those items down.

A text encoder reads "Dislikes horror." as a text about horror: appended to a profile it moved
horror films up, not down (all-MiniLM-L6-v2 on MovieLens: 0 -> 9-17 horror films in the top 20 of
three test profiles, about as many as "Loves horror." gave). So a profile is split into what it
likes and what it dislikes before it is encoded:

- a profile is cut into sentences and each sentence into parts at contrasts ("but", "while",
  "although", ";"); a sentence also starts where a profile cut off mid-sentence runs into an
  appended sentence that says what the user does not want ("... a soft spot for classic Horror is
  not my thing.");
- a part is a dislike when it holds a word of aversion ("dislike", "hate", "avoid", "tired of",
  "bores", "skip", "stop recommending", ...), or a negation ("no", "not", "never", "n't", "zero",
  ...) that opens it or stands within a few words of a word of preference ("like", "watch",
  "recommend", "my thing", "for me", "interest", ...), as people phrase it ("No horror movies,
  please.", "Horror is not my thing.", "Stop recommending horror."); idioms of liking ("not
  only", "can't get enough") and titles ("No Country for Old Men") are no dislikes, nor is a
  negation that says nothing of preference ("rated it as not the least");
- its topic is what is left of the part once the negations, aversions and words that say nothing
  about items (pronouns, "please", "watch", "recommend", "my thing", ...) are taken out: "Horror
  is not my thing" dislikes "Horror";
- the query is the embedding of the liked text minus DISLIKE_WEIGHT times the mean embedding of
  the disliked topics, renormalised. A profile with no dislike gets its plain embedding, bit for bit.

With the weight at 0.5, "Dislikes horror." took the same three profiles to 0 horror films in the
top 20 and moved horror's mean rank from about 1,000 to about 1,480 of 1,682
(tests/test_dislikes.py checks the direction on the bundled encoder, and measures the method on
held-out phrasings it was not written against, tests/dislike_phrasings.py). Training's
contrastive phase still encodes profiles whole: its gradients flow through the plain embedding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DISLIKE_WEIGHT = 0.5
Encode = Callable[[Sequence[str]], np.ndarray]

# Words of aversion: a part holding one says what the user does not want.
_AVERSION = (
    r"(?:can't|cannot|can not) (?:stand|bear)|dislike[sd]?|hate[sd]?|hating|detest[sd]?|loathe[sd]?"
    r"|avoid(?:s|ed|ing)?|skip(?:s|ping)?|stop(?:s|ped)? (?:recommending|suggesting|showing)|tired of|sick of"
    r"|bored|bores?|done with|fed up|spare (?:me|them|him|her)|enough (?:with|of)|pass on|hard pass|rather not"
    r"|except|anything but|leaves? (?:me|them|him|her) cold|away from|steers? clear|stays? away"
    r"|off (?:my|their|the) (?:list|radar)"
)
# Negations: they say what the user does not want where they open the part ("No horror",
# "Never liked musicals") or stand next to a word of preference ("is not my thing", "don't
# recommend", "zero interest in"); elsewhere ("rated it as not the least") they say nothing of it.
_NEGATION = r"no|not|never|nothing|none|zero|without|nor|\w+n't|cannot|less|fewer"
_PREFERENCE = re.compile(
    r"\b(?:like[sd]?|liking|love[sd]?|enjoy\w*|want\w*|watch\w*|see|seeing|recommend\w*|suggest\w*|show\w*"
    r"|fan|fans|thing|things|for (?:me|them|him|her|us)|interest\w*|appeal\w*|into|care\w*|cup of tea|person"
    r"|type|prefer\w*|pick\w*|choose|favou?rites?|taste)\b",
    re.IGNORECASE,
)
_PREFERENCE_WINDOW = 5  # words on either side of a negation
_OPENING = re.compile(r"^(?:[\s,]|\b(?:please|and|so|also|absolutely|just|really|definitely|honestly)\b)*$", re.I)
_AVERSIVE = re.compile(rf"\b(?:{_AVERSION})\b", re.IGNORECASE)
_NEGATIVE = re.compile(rf"\b(?:{_NEGATION})\b", re.IGNORECASE)
_WORD = re.compile(r"[\w']+")
# Negations that say what the user likes: taken out before a part is judged.
_LIKING_IDIOM = re.compile(
    r"\b(?:not only|not just|no matter|never fails?|nothing but|no doubt|no shortage|no stranger"
    r"|(?:can't|cannot|can not) (?:get enough|stop)|never gets? old|not afraid|not to be missed|(?:with|of) no end)\b",
    re.IGNORECASE,
)
# Words that say nothing about the items: left out of a disliked topic.
_NOT_TOPIC = re.compile(
    rf"\b(?:{_AVERSION}|{_NEGATION}|i|i'm|i'd|i've|i'll|me|my|myself|we|us|our|you|your|they|them|their|he|she|his|her"
    r"|it|its|it's|this|that|these|those|the|a|an|any|anything|everything|something|some|more|much|many"
    r"|really|just|quite|so|very|too|also|at all|all|please|thanks|thank you|again|anymore|ever|especially"
    r"|particularly|generally|usually|is|are|am|was|were|be|been|being|do|does|did|have|has|had|would|could"
    r"|should|will|can|may|might|must|to|for|of|with|on|in|about|into|from|by|as|keep|keeps|let|lets"
    r"|watch(?:es|ed|ing)?|see(?:s|ing)?|show(?:s|ing)?|recommend(?:s|ed|ing|ations?)?|suggest(?:s|ed|ing|ions?)?"
    r"|like[sd]?|enjoy(?:s|ed)?|want(?:s|ed)?|care[sd]?|fan|fond|keen|interest(?:ed|s)?|appeal(?:s|ing)?"
    r"|prefer(?:s|red)?|rather|thing|things|person|type|kind|cup|tea|list|way|user|viewer|patience|time)\b"
    r"|[.!?,;:\"()]+",
    re.IGNORECASE,
)
# Words of liking: a part that likes something before its negation ("They enjoy comedies and
# dislike horror") keeps that much as liked text.
_LIKING = re.compile(
    r"\b(?:love[sd]?|loving|like[sd]?|enjoy(?:s|ed)?|adore[sd]?|appreciate[sd]?|prefer(?:s|red)?|favou?rites?"
    r"|fan of|fond of|drawn to)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TITLE_WORD = re.compile(r"\s+[A-Z]")
_DANGLING = re.compile(r"(?:[\s,;]+|\s+\b(?:and|or|but)\b)+$", re.IGNORECASE)
# Where a sentence of its own may start without a full stop before it: a capitalised word right
# after a lower-case one (a profile cut off mid-sentence, then a sentence appended).
_UNMARKED_START = re.compile(r"(?<=[a-z,])\s+(?=[A-Z])")
_CONTRAST = re.compile(
    r"\s*(?:;|,?\s+\b(?:(?<!anything )but|while|whereas|although|though|yet|however)\b,?)\s*", re.IGNORECASE
)
@dataclass(frozen=True)
class Preferences:
    """A profile split into the text of what the user likes and the topics they do not want."""

    liked: str
    disliked: tuple[str, ...]


def split_preferences(profile: str) -> Preferences:
    """`profile` as liked text plus disliked topics (see the module docstring)."""
    liked, disliked = [], []
    for sentence in _sentences(profile):
        for part in _CONTRAST.split(sentence):
            negation = _first_negation(part)
            if negation is None:
                liked.append(part)
                continue
            before = part[: negation.start()]
            if _LIKING.search(before):
                liked.append(_DANGLING.sub("", before))
                part = part[negation.start() :]
            topic = _topic(part)
            if topic:
                disliked.append(topic)
    liked_text = " ".join(p.strip() for p in liked if p.strip())
    return Preferences(liked_text, tuple(disliked))


def _sentences(profile: str) -> list[str]:
    """The profile's sentences; one without a full stop before a dislike is split before it."""
    sentences = []
    for sentence in _SENTENCE_END.split(profile.strip()):
        for start in _UNMARKED_START.finditer(sentence):
            head, tail = sentence[: start.start()], sentence[start.end() :]
            if not _is_dislike(head) and _is_dislike(tail):
                sentences.append(head)
                sentence = tail
                break
        sentences.append(sentence)
    return sentences


def _first_negation(part: str) -> re.Match[str] | None:
    """The part's first aversion, or negation that says what the user does not want (see
    _NEGATION); idioms of liking and titles left out ("No Country for Old Men": a capitalised
    negation followed by a capitalised word)."""
    text = _LIKING_IDIOM.sub(lambda idiom: " " * len(idiom.group()), part)
    found = [_AVERSIVE.search(text)]
    for negation in _NEGATIVE.finditer(text):
        if negation.group()[0].isupper() and _TITLE_WORD.match(text, negation.end()):
            continue
        before, after = text[: negation.start()], text[negation.end() :]
        nearby = " ".join(
            _WORD.findall(before)[-_PREFERENCE_WINDOW:] + _WORD.findall(after)[:_PREFERENCE_WINDOW]
        )
        if _OPENING.match(before) or _PREFERENCE.search(nearby):
            found.append(negation)
            break
    return min((match for match in found if match), key=lambda match: match.start(), default=None)


def _is_dislike(part: str) -> bool:
    return _first_negation(part) is not None


def _topic(part: str) -> str:
    return " ".join(_NOT_TOPIC.sub(" ", part).split())


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
