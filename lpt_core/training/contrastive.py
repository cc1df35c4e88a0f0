"""The recommender ("decoder") phase: contrastive training of the text encoder on fixed profiles.

InfoNCE from each profile to its user's target item text, the other targets of the batch serving as
negatives, profile -> item direction only (method.md, "Training"). That is sentence-transformers'
MultipleNegativesRankingLoss with scale = 1/tau, used here as is. Beyond the paper, a learned
per-item bias can be added to every item's logit (`ItemBias`): it absorbs item popularity, so the
embeddings need not. The bias never touches the profile, which stays the only user representation.

An in-batch softmax cannot learn popularity by itself: its negatives are other users' targets, so
a popular item is a negative as often as it is a positive, and a bias on it gets no net gradient.
The biased loss therefore applies the sampled-softmax ("logQ") correction of Yi et al. (RecSys
2019): each column's logit is lowered by the log of how often its item is drawn into a batch, which
makes the in-batch loss approximate the full-catalogue softmax, where a bias does learn popularity.
At ranking time the score is cos + bias, without the correction.

A compact torch loop rather than SentenceTransformerTrainer: a phase is a fixed number of steps on
profiles that exist only in memory, alternating with RL phases in the same process. The trainer
would want a `datasets.Dataset`, an output folder and its own checkpointing and logging machinery
on every call, and it cannot hand the item-bias loss the catalogue positions of a batch's targets.
The loop is the model's own forward pass, the library's loss module, and an optimizer of its own
(never shared with the LLM, whose drift under a shared optimizer is a known fault of the reference).

Duplicate targets in a batch would be false negatives (a user's own target counted as another's
negative). They are AVOIDED, not masked: batches are drawn so that no target appears twice, the
way sentence-transformers' NO_DUPLICATES batch sampler does, so the plain loss stays exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import nn

from lpt_core.config import ContrastiveConfig


class ItemBias(nn.Module):
    """A learned score offset per catalogue item, indexed by catalogue position (zeros at start)."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.values = nn.Parameter(torch.zeros(num_items))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.values[positions]

    def to_numpy(self) -> np.ndarray:
        return self.values.detach().cpu().numpy().astype(np.float32)

    @classmethod
    def from_numpy(cls, values: np.ndarray) -> ItemBias:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1:
            raise ValueError(f"item bias values must be one-dimensional, got shape {values.shape}")
        bias = cls(len(values))
        with torch.no_grad():
            bias.values.copy_(torch.from_numpy(values))
        return bias


class ItemBiasedInfoNCE(nn.Module):
    """InfoNCE with logits[u, v] = scale * cos(q_u, k_v) + b[i_v] - log_inclusion[i_v], where i_v
    is the catalogue item of column v; labels on the diagonal.

    `log_inclusion` (per catalogue item, default zeros) is the logQ correction, see the module
    docstring. With a zero bias and no correction it equals MultipleNegativesRankingLoss(scale).
    """

    def __init__(self, scale: float, item_bias: ItemBias, log_inclusion: torch.Tensor | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.item_bias = item_bias
        if log_inclusion is None:
            log_inclusion = torch.zeros_like(item_bias.values, requires_grad=False)
        self.register_buffer("log_inclusion", log_inclusion.detach().to(item_bias.values), persistent=False)

    def forward(
        self, queries: torch.Tensor, targets: torch.Tensor, target_positions: torch.Tensor
    ) -> torch.Tensor:
        cosines = nn.functional.normalize(queries, dim=-1) @ nn.functional.normalize(targets, dim=-1).T
        offsets = self.item_bias(target_positions) - self.log_inclusion[target_positions]
        logits = self.scale * cosines + offsets[None, :]
        labels = torch.arange(len(queries), device=logits.device)
        return nn.functional.cross_entropy(logits, labels)


def train_recommender(
    encoder: SentenceTransformer,
    profiles: Sequence[str],
    target_texts: Sequence[str],
    cfg: ContrastiveConfig,
    seed: int,
    target_positions: Sequence[int] | None = None,
    item_bias: ItemBias | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Train `encoder` (in place) for `cfg.steps_per_round` steps of InfoNCE, profile -> target text.

    `target_positions` are the targets' catalogue positions: they identify duplicate targets (by
    text when absent) and index `item_bias`, which then trains with the encoder. A fresh AdamW
    optimizer per call, with linear warm-up over `cfg.warmup_ratio` of the steps. Returns one
    {"loss", "seconds", "batch_size"} per step; `on_step(step, that dict)` is called after each.
    """
    _check_inputs(profiles, target_texts, target_positions, item_bias)
    keys: Sequence[Hashable] = target_positions if target_positions is not None else target_texts
    torch.manual_seed(seed)
    batches = distinct_target_batches(keys, cfg.batch_size, np.random.default_rng(seed))
    mnrl = MultipleNegativesRankingLoss(encoder, scale=cfg.scale)
    biased = None
    parameters = list(encoder.parameters())
    if item_bias is not None:
        batch_size = min(cfg.batch_size, len(set(keys)))
        log_inclusion = batch_log_inclusion(target_positions, len(item_bias.values), batch_size)
        biased = ItemBiasedInfoNCE(cfg.scale, item_bias.to(encoder.device), log_inclusion)
        parameters += list(item_bias.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate)
    scheduler = _warmup_schedule(optimizer, round(cfg.warmup_ratio * cfg.steps_per_round))

    history: list[dict] = []
    encoder.train()
    try:
        for step in range(cfg.steps_per_round):
            started = time.perf_counter()
            batch = next(batches)
            queries = _embed(encoder, [profiles[i] for i in batch])
            targets = _embed(encoder, [target_texts[i] for i in batch])
            if biased is not None:
                positions = torch.as_tensor([target_positions[i] for i in batch], device=encoder.device)
                loss = biased(queries, targets, positions)
            else:
                loss = mnrl.compute_loss_from_embeddings([queries, targets], labels=None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            record = {"loss": float(loss.detach()), "seconds": time.perf_counter() - started, "batch_size": len(batch)}
            history.append(record)
            if on_step is not None:
                on_step(step, record)
    finally:
        encoder.eval()
    return history


def distinct_target_batches(
    keys: Sequence[Hashable], batch_size: int, rng: np.random.Generator
) -> Iterator[list[int]]:
    """Endless batches of row indices, no key twice in a batch, every row once per pass.

    Rows are taken in a shuffled order; a row whose key is already in the batch waits for a later
    batch. Batches hold min(batch_size, number of distinct keys) rows.
    """
    distinct = len(set(keys))
    if distinct < 2:
        raise ValueError(f"contrastive training needs at least 2 distinct targets, got {distinct}")
    size = min(batch_size, distinct)
    waiting: list[int] = []
    while True:
        waiting.extend(rng.permutation(len(keys)).tolist())
        while len(waiting) >= size:
            batch, seen, kept = [], set(), []
            for row in waiting:
                if len(batch) < size and keys[row] not in seen:
                    batch.append(row)
                    seen.add(keys[row])
                else:
                    kept.append(row)
            if len(batch) < size:
                break  # the rows left hold too few distinct keys: add the next pass first
            waiting = kept
            yield batch


def batch_log_inclusion(target_positions: Sequence[int], num_items: int, batch_size: int) -> torch.Tensor:
    """log of each item's chance to be in a batch: min(1, batch_size * its share of the targets).

    That is the chance under sampling by popularity, capped at 1 because a batch holds an item at
    most once (`distinct_target_batches`). Items that are nobody's target get log(1) = 0, unused.
    """
    counts = np.bincount(np.asarray(target_positions, dtype=np.int64), minlength=num_items)
    inclusion = np.minimum(1.0, batch_size * counts / max(1, len(target_positions)))
    return torch.from_numpy(np.log(np.where(counts > 0, inclusion, 1.0))).float()


def _embed(encoder: SentenceTransformer, texts: list[str]) -> torch.Tensor:
    features = encoder.preprocess(texts)
    features = {k: v.to(encoder.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return encoder(features)["sentence_embedding"]


def _warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    )


def _check_inputs(
    profiles: Sequence[str],
    target_texts: Sequence[str],
    target_positions: Sequence[int] | None,
    item_bias: ItemBias | None,
) -> None:
    if len(profiles) != len(target_texts):
        raise ValueError(f"{len(profiles)} profiles but {len(target_texts)} target texts")
    if target_positions is not None and len(target_positions) != len(profiles):
        raise ValueError(f"{len(profiles)} profiles but {len(target_positions)} target positions")
    if item_bias is not None:
        if target_positions is None:
            raise ValueError("item_bias needs target_positions (the targets' catalogue positions)")
        size = len(item_bias.values)
        if any(not 0 <= p < size for p in target_positions):
            raise ValueError(f"target_positions must lie in [0, {size}) for an item bias of {size} items")
