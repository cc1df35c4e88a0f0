"""The recommender ("decoder") phase: contrastive training of the text encoder on fixed profiles.

InfoNCE from each profile to its user's target item text, the other targets of the batch serving as
negatives, profile -> item direction only (docs/method.md, "Training"). That is sentence-transformers'
MultipleNegativesRankingLoss with scale = 1/tau, used here as is. Beyond the paper, a learned
per-item bias can be added to every item's logit (`ItemBias`): it absorbs item popularity, so the
embeddings need not. The bias never touches the profile, which stays the only user representation.

An in-batch softmax cannot learn popularity by itself: its negatives are other users' targets, so
a popular item is a negative as often as it is a positive, and a bias on it gets no net gradient.
The biased loss therefore applies the sampled-softmax ("logQ") correction of Yi et al. (RecSys
2019): each column's logit is lowered by the log of how often its item is drawn into a batch, which
makes the in-batch loss approximate the full-catalogue softmax, where a bias does learn popularity.
At ranking time the score is cos + bias, without the correction.

Optionally (cfg.val_every) the steps stop early on the val NDCG@10 of the encoder as it stands,
and the best check's weights are kept: on a few users' profiles the whole encoder memorises them
long before the step budget is spent (issue 12).

A compact torch loop rather than SentenceTransformerTrainer: a phase is a fixed number of steps on
profiles that exist only in memory, alternating with RL phases in the same process. The trainer
would want a `datasets.Dataset`, an output folder and its own checkpointing and logging machinery
on every call, and it cannot hand the item-bias loss the catalogue positions of a batch's targets.
The loop is the model's own forward pass, the library's loss module, and an optimizer of its own
(never shared with the LLM, whose drift under a shared optimizer is a known fault of the reference).

Duplicate targets in a batch would be false negatives (a user's own target counted as another's
negative). They are AVOIDED, not masked: batches are drawn so that no target appears twice, the
way sentence-transformers' NO_DUPLICATES batch sampler does, so the plain loss stays exact.

Launched in several processes (lpt_core.training.distributed), cfg.batch_size is the batch of ALL
processes: every process draws the same batches (same seed) and embeds its own equal share, and
the loss gathers every process's item embeddings as negatives (MNRL's gather_across_devices; the
biased loss gathers the same way), so N processes compute the single-process loss of the whole
batch, and duplicates are avoided across the whole batch too. DDP averages the gradients. (The
reference took negatives from each GPU's own micro-batch only.)
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
from lpt_core.training import distributed


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
        self,
        queries: torch.Tensor,
        targets: torch.Tensor,
        target_positions: torch.Tensor,
        target_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """This process's queries against the targets of ALL processes (one process: its own).

        `target_bias` is item_bias(target_positions) when the caller already computed it (inside
        the DDP-wrapped forward, where DDP must see every use of the bias)."""
        if target_bias is None:
            target_bias = self.item_bias(target_positions)
        targets = distributed.gather_with_grad(targets)
        target_bias = distributed.gather_with_grad(target_bias)
        target_positions = distributed.gather(target_positions)
        cosines = nn.functional.normalize(queries, dim=-1) @ nn.functional.normalize(targets, dim=-1).T
        offsets = target_bias - self.log_inclusion[target_positions]
        logits = self.scale * cosines + offsets[None, :]
        first = distributed.rank() * len(queries)
        labels = torch.arange(first, first + len(queries), device=logits.device)
        return nn.functional.cross_entropy(logits, labels)


class _TrainedModules(nn.Module):
    """The encoder and the item bias as one module, so one DDP wrapper averages both's gradients.

    forward returns the texts' embeddings and, given catalogue positions, those items' biases: DDP
    wants every parameter used inside the wrapped forward."""

    def __init__(self, encoder: SentenceTransformer, item_bias: ItemBias | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.item_bias = item_bias

    def forward(
        self, features: dict, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        embeddings = self.encoder(features)["sentence_embedding"]
        bias = None if positions is None or self.item_bias is None else self.item_bias(positions)
        return embeddings, bias


def train_recommender(
    encoder: SentenceTransformer,
    profiles: Sequence[str],
    target_texts: Sequence[str],
    cfg: ContrastiveConfig,
    seed: int,
    target_positions: Sequence[int] | None = None,
    item_bias: ItemBias | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    validate: Callable[[], float] | None = None,
) -> list[dict]:
    """Train `encoder` (in place) for `cfg.steps_per_round` steps of InfoNCE, profile -> target text.

    `target_positions` are the targets' catalogue positions: they identify duplicate targets (by
    text when absent) and index `item_bias`, which then trains with the encoder. A fresh AdamW
    optimizer per call, with linear warm-up over `cfg.warmup_ratio` of the steps. Returns one
    {"loss", "seconds", "batch_size"} per step; `on_step(step, that dict)` is called after each.

    With `validate` (the val NDCG@10 of the encoder and bias as they stand; every process calls
    it) and cfg.val_every > 0, it is checked before the first step and every cfg.val_every steps
    (the step's record gets "val_ndcg@10"); training stops after cfg.val_patience checks without a
    gain and the weights of the best check are restored.
    """
    _check_inputs(profiles, target_texts, target_positions, item_bias)
    keys: Sequence[Hashable] = target_positions if target_positions is not None else target_texts
    torch.manual_seed(seed)
    processes = distributed.world_size()
    batches = distinct_target_batches(keys, cfg.batch_size, np.random.default_rng(seed), multiple_of=processes)
    mnrl = MultipleNegativesRankingLoss(encoder, scale=cfg.scale, gather_across_devices=processes > 1)
    biased = None
    if item_bias is not None:
        batch_size = batch_rows(len(set(keys)), cfg.batch_size, processes)
        log_inclusion = batch_log_inclusion(target_positions, len(item_bias.values), batch_size)
        biased = ItemBiasedInfoNCE(cfg.scale, item_bias.to(encoder.device), log_inclusion)
    trained = _TrainedModules(encoder, item_bias)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=cfg.learning_rate)
    # Encoders can hold parameters their sentence embedding never uses (BERT's pooler under mean pooling).
    training = distributed.prepare_training(trained, optimizer, some_parameters_unused=True)
    scheduler = _warmup_schedule(training.optimizer, round(cfg.warmup_ratio * cfg.steps_per_round))

    history: list[dict] = []
    best = None if validate is None or not cfg.val_every else _BestWeights(trained, validate)
    if best is not None:
        best.check()
    encoder.train()
    try:
        for step in range(cfg.steps_per_round):
            started = time.perf_counter()
            whole_batch = next(batches)
            batch = distributed.own_share(whole_batch, "training.contrastive.batch_size")
            queries, _ = _embed(training.model, encoder, [profiles[i] for i in batch])
            if biased is not None:
                positions = torch.as_tensor([target_positions[i] for i in batch], device=encoder.device)
                targets, target_bias = _embed(training.model, encoder, [target_texts[i] for i in batch], positions)
                loss = biased(queries, targets, positions, target_bias)
            else:
                targets, _ = _embed(training.model, encoder, [target_texts[i] for i in batch])
                loss = mnrl.compute_loss_from_embeddings([queries, targets], labels=None)
            training.optimizer.zero_grad(set_to_none=True)
            training.backward(loss)
            training.optimizer.step()
            scheduler.step()
            record = {
                "loss": distributed.mean_across(float(loss.detach())),
                "seconds": time.perf_counter() - started,
                "batch_size": len(whole_batch),
            }
            if best is not None and (step + 1) % cfg.val_every == 0:
                record["val_ndcg@10"] = best.check()
                encoder.train()  # encoding for the check left it in eval mode
            history.append(record)
            if on_step is not None:
                on_step(step, record)
            if best is not None and best.checks_since_best >= cfg.val_patience:
                break
        if best is not None:
            best.restore()
    finally:
        encoder.eval()
    return history


class _BestWeights:
    """A copy of the weights at the best validation check so far."""

    def __init__(self, module: nn.Module, validate: Callable[[], float]) -> None:
        self.module, self.validate = module, validate
        self.best_value, self.best_state, self.checks_since_best = -np.inf, None, 0

    def check(self) -> float:
        value = self.validate()
        if value > self.best_value:
            self.best_value, self.checks_since_best = value, 0
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        else:
            self.checks_since_best += 1
        return value

    def restore(self) -> None:
        self.module.load_state_dict(self.best_state)


def batch_rows(distinct: int, batch_size: int, multiple_of: int = 1) -> int:
    """Rows per batch: min(batch_size, distinct keys), rounded down to a multiple of `multiple_of`
    (the number of processes, which each take an equal share); at least 2, and 1 per process."""
    size = min(batch_size, distinct) // multiple_of * multiple_of
    if size < max(2, multiple_of):
        raise ValueError(
            f"contrastive training needs at least {max(2, multiple_of)} distinct targets per batch "
            f"({multiple_of} processes), got {distinct} distinct targets and batch_size {batch_size}"
        )
    return size


def distinct_target_batches(
    keys: Sequence[Hashable], batch_size: int, rng: np.random.Generator, multiple_of: int = 1
) -> Iterator[list[int]]:
    """Endless batches of row indices, no key twice in a batch, every row once per pass.

    Rows are taken in a shuffled order; a row whose key is already in the batch waits for a later
    batch. Batches hold `batch_rows(distinct keys, batch_size, multiple_of)` rows.
    """
    size = batch_rows(len(set(keys)), batch_size, multiple_of)
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


def _embed(
    model: nn.Module, encoder: SentenceTransformer, texts: list[str], positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings of `texts` (and biases of `positions`) through `model`: _TrainedModules, or its
    DDP wrapper; with grad."""
    features = encoder.preprocess(texts)
    features = {k: v.to(encoder.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return model(features, positions)


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
