"""The simulated-reader test: can a judge LLM, reading only a profile, tell the user's next item?

After the paper's GPT-4 simulation. Each evaluated row gets the target and `count - 1` random
catalogue items (not in the history), in a seeded shuffled order, the same for every profile
variant, so variants are compared on identical questions. The judge scores each candidate and
picks the best; chance is 1 / count.

Generating an answer and parsing it is fragile with a small model, so the judge scores instead:
the candidate's item text as the assistant's answer to "Profile: ... Which movie would this user
watch next?", by its log-likelihood given the profile MINUS its log-likelihood given no profile
(domain-conditional PMI, Holtzman et al. 2021). The subtraction removes what the model thinks of
an item regardless of the user (short, popular titles are likely answers to anything), so what is
left is what the profile contributes. Any function with the CandidateScorer signature can judge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
# Seconds between progress lines: a report over hundreds of rows scores thousands of answers.
PROGRESS_EVERY_S = 30.0

CandidateScorer = Callable[[Sequence[str], Sequence[Sequence[str]]], list[np.ndarray]]
"""(profiles, candidate texts per profile) -> one score per candidate, higher = more likely."""

NO_PROFILE = "(no profile)"


def sample_candidates(
    targets: Sequence[str],
    histories: Sequence[Sequence[str]],
    catalogue_ids: Sequence[str],
    count: int,
    seed: int,
) -> list[list[str]]:
    """Per row: the target and `count - 1` distinct random catalogue items outside the row's
    history, shuffled. Row i's draw depends only on (seed, i), not on the other rows."""
    if count < 2:
        raise ValueError(f"count must be >= 2 (the target and at least one other item), got {count}")
    catalogue = np.asarray(catalogue_ids, dtype=str)
    rows = []
    for row, (target, history) in enumerate(zip(targets, histories, strict=True)):
        taken = set(history) | {target}
        pool = catalogue[~np.isin(catalogue, list(taken))]
        if len(pool) < count - 1:
            raise ValueError(f"row {row}: only {len(pool)} catalogue items outside the history, need {count - 1}")
        rng = np.random.default_rng([seed, row])
        chosen = [target, *rng.choice(pool, size=count - 1, replace=False).tolist()]
        rows.append([chosen[i] for i in rng.permutation(count)])
    return rows


def choice_credit(scores: np.ndarray, target_position: int) -> float:
    """1 when the target alone scores highest, 1/t when it ties with t-1 others at the top
    (the expected accuracy of a random tie-break), 0 otherwise."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores.max()
    if scores[target_position] < best:
        return 0.0
    return 1.0 / int(np.count_nonzero(scores == best))


def reader_accuracy(
    profiles: Sequence[str],
    candidate_texts: Sequence[Sequence[str]],
    target_positions: Sequence[int],
    scorer: CandidateScorer,
) -> np.ndarray:
    """Per row: the judge's credit (choice_credit) for picking the target from the candidates."""
    scores = scorer(profiles, candidate_texts)
    if len(scores) != len(profiles):
        raise ValueError(f"the scorer returned {len(scores)} score rows for {len(profiles)} profiles")
    return np.array([choice_credit(s, p) for s, p in zip(scores, target_positions, strict=True)])


class LikelihoodJudge:
    """A causal chat LM as a CandidateScorer: PMI of the candidate answer and the profile."""

    def __init__(self, model: Any, tokenizer: Any, question: str, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.question, self.batch_size = model, tokenizer, question, batch_size
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._prior: dict[str, float] = {}  # candidate text -> log-likelihood given no profile

    def __call__(self, profiles: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        unseen = sorted({c for row in candidates for c in row} - self._prior.keys())
        no_profile = self._prompt_ids(NO_PROFILE)
        for text, value in zip(unseen, self._log_likelihoods([(no_profile, text) for text in unseen])):
            self._prior[text] = value
        pairs = [(self._prompt_ids(p), c) for p, row in zip(profiles, candidates, strict=True) for c in row]
        conditioned = iter(self._log_likelihoods(pairs))
        return [np.array([next(conditioned) - self._prior[c] for c in row]) for row in candidates]

    def _prompt_ids(self, profile: str) -> list[int]:
        content = f"Profile of the user:\n{profile.strip()}\n\n{self.question}"
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def _log_likelihoods(self, pairs: Sequence[tuple[list[int], str]]) -> list[float]:
        """Sum of log p(answer tokens | prompt tokens) per (prompt ids, answer text) pair."""
        if not pairs:
            return []
        answers = self.tokenizer([answer for _, answer in pairs], add_special_tokens=False)["input_ids"]
        tokenized = [(prompt, answer) for (prompt, _), answer in zip(pairs, answers, strict=True)]
        totals: list[float] = []
        started = last_line = time.perf_counter()
        for start in range(0, len(tokenized), self.batch_size):
            totals.extend(self._batch_log_likelihoods(tokenized[start : start + self.batch_size]))
            if time.perf_counter() - last_line >= PROGRESS_EVERY_S:
                last_line = time.perf_counter()
                log.info("simulated reader: %d/%d answers scored (%.1f/s)", len(totals), len(tokenized),
                         len(totals) / (last_line - started))
        return totals

    def _batch_log_likelihoods(self, batch: list[tuple[list[int], list[int]]]) -> list[float]:
        # Left padding puts every answer at the end of its row, so only the last positions' logits
        # are needed (logits_to_keep) instead of a batch x length x vocabulary tensor.
        sequences = [prompt + answer for prompt, answer in batch]
        width = max(len(s) for s in sequences)
        device = self.model.device
        ids = torch.tensor([[self._pad_id] * (width - len(s)) + s for s in sequences], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real positions, as if unpadded
        longest = max(len(answer) for _, answer in batch)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=longest + 1).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts token j + 1
        targets = ids[:, -longest:]
        token_scores = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return [float(token_scores[row, longest - len(answer):].sum()) for row, (_, answer) in enumerate(batch)]
