"""The item-side head: what the recommender learns, folded onto the item side of FROZEN text embeddings.

A learned map W on the user side scores (W q) . k = q . (W^T k): the same bilinear score as a map
on the item side. So everything learned sits on the items:

    v_i = scale * (M k_i + r_i),    score(u, i) = q_u . v_i + b_i

with q_u the encoder's normalised embedding of the profile (unchanged: the user side stays text
only, so editing a profile still steers the ranking), k_i the normalised embedding of the item
text, M a dim x dim map (identity at start), r_i a per-item residual ("hybrid" only; zero at start,
L2-regularised) and b_i a per-item bias. The bias starts at zero (plain cosine at the start) or, with
bias_init "popularity", at the log of the items' smoothed train interaction counts: a head fitted on a
few hundred rows learns little popularity from their targets alone, while the prior carries the
whole train split's counts, so the untrained head already ranks as popularity plus cosine.

Downstream nothing changes: an ItemIndex built from the vectors v_i WITHOUT re-normalising them and
carrying b as its bias scores q . v_i + b_i, so the RL reward, evaluation and serving use the head
through the index alone (`ItemHead.index`).

Training is a full-catalogue softmax cross-entropy (no sampled negatives, no popularity correction:
the catalogue is small enough to score whole), the row's history items masked out of the softmax
as they are out of the ranking, minibatches of all train rows, AdamW, and early stopping on val
NDCG@10: evaluated before training and after every epoch, the best state kept. On CPU in float32
whatever the machine: a few seconds for thousands of rows and items.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpt_core import metrics
from lpt_core.config import HeadStart, ItemHeadConfig
from lpt_core.retrieval import IndexKind, ItemIndex, TextEncoder, ranks_in_chunks

VAL_METRIC = "val_ndcg@10"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemHead:
    """A fitted head: v_i = scale * (transform @ k_i + residual_i), score = q . v_i + bias_i."""

    transform: np.ndarray  # (dim, dim): M
    residual: np.ndarray  # (items, dim): r, zeros for a linear head
    bias: np.ndarray  # (items,): b
    scale: float

    def __post_init__(self) -> None:
        dim = self.transform.shape[0]
        items = len(self.bias)
        if self.transform.shape != (dim, dim) or self.residual.shape != (items, dim) or self.bias.ndim != 1:
            raise ValueError(
                f"item head shapes do not fit: transform {self.transform.shape}, residual "
                f"{self.residual.shape}, bias {self.bias.shape}"
            )

    @classmethod
    def identity(cls, num_items: int, dim: int, scale: float) -> ItemHead:
        """The untrained head: ranks exactly as cosine similarity does."""
        return cls(
            np.eye(dim, dtype=np.float32),
            np.zeros((num_items, dim), dtype=np.float32),
            np.zeros(num_items, dtype=np.float32),
            float(scale),
        )

    def __len__(self) -> int:
        return len(self.bias)

    def item_vectors(self, item_embeddings: np.ndarray) -> np.ndarray:
        """The items' vectors v (items x dim) from their normalised text embeddings k."""
        item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        if item_embeddings.shape != self.residual.shape:
            raise ValueError(f"item embeddings {item_embeddings.shape} do not fit a head of {self.residual.shape}")
        return (self.scale * (item_embeddings @ self.transform.T + self.residual)).astype(np.float32)

    def index(self, item_ids: Sequence[str], item_embeddings: np.ndarray, kind: IndexKind = "flat") -> ItemIndex:
        """The catalogue index that scores q . v_i + b_i (vectors kept unnormalised)."""
        return ItemIndex.build(item_ids, self.item_vectors(item_embeddings), kind=kind, bias=self.bias, normalize=False)

    def save(self, path: Path) -> Path:
        path = Path(path)
        with path.open("wb") as file:  # a file object, so numpy does not append ".npz"
            np.savez(file, transform=self.transform, residual=self.residual, bias=self.bias, scale=self.scale)
        return path

    @classmethod
    def load(cls, path: Path) -> ItemHead:
        with np.load(Path(path)) as stored:
            return cls(
                stored["transform"].astype(np.float32),
                stored["residual"].astype(np.float32),
                stored["bias"].astype(np.float32),
                float(stored["scale"]),
            )


def build_item_index(
    item_ids: Sequence[str],
    item_embeddings: np.ndarray,
    kind: IndexKind = "flat",
    item_bias: np.ndarray | None = None,
    head: ItemHead | None = None,
) -> ItemIndex:
    """A trained recommender's index: cosine plus the in-batch item bias if any, or the head's."""
    if head is None:
        return ItemIndex.build(item_ids, item_embeddings, kind=kind, bias=item_bias)
    if item_bias is not None:
        raise ValueError("an item head carries its own per-item bias: pass item_bias or head, not both")
    return head.index(item_ids, item_embeddings, kind)


@dataclass(frozen=True)
class HeadExamples:
    """Rows the head fits or is checked on: query embeddings, targets and histories as catalogue positions."""

    queries: np.ndarray  # (rows, dim), normalised
    targets: np.ndarray  # (rows,)
    histories: Sequence[np.ndarray]

    def __post_init__(self) -> None:
        if not len(self.queries) == len(self.targets) == len(self.histories):
            raise ValueError(
                f"row counts differ: {len(self.queries)} queries, {len(self.targets)} targets, "
                f"{len(self.histories)} histories"
            )
        if len(self.targets) == 0:
            raise ValueError("an item head needs at least one row to fit and one to check")


@dataclass(frozen=True)
class TextRows:
    """Rows as query texts, with each row's target and history item ids."""

    texts: Sequence[str]
    targets: Sequence[str]
    histories: Sequence[Sequence[str]]

    @classmethod
    def of(cls, examples: Any, texts: Sequence[str]) -> TextRows:
        """`texts` (one per row) with the target and history of each row of an EXAMPLES frame."""
        return cls(list(texts), examples["target_item_id"].to_list(), examples["history_item_ids"].to_list())

    def encoded(self, encoder: TextEncoder, index: ItemIndex) -> HeadExamples:
        """The rows embedded by `encoder`, placed by `index`'s catalogue positions."""
        return HeadExamples(
            encoder.encode(self.texts), index.positions(self.targets), [index.positions(h) for h in self.histories]
        )


@dataclass
class FittedHead:
    """The best head found, one record per epoch of its fit (epoch 0 = before training):
    {"epoch", "train_loss" (None at epoch 0), "val_ndcg@10"}, and the start it was fitted from."""

    head: ItemHead
    history: list[dict]
    best_epoch: int
    start: HeadStart

    @property
    def best_val_ndcg(self) -> float:
        return self.history[self.best_epoch][VAL_METRIC]


def popularity_prior(item_counts: np.ndarray) -> np.ndarray:
    """log((count + 1) / sum(count + 1)) per item: the log-probability of each item under add-one
    smoothed train popularity (an item never seen in train stays finite)."""
    smoothed = np.asarray(item_counts, dtype=np.float64) + 1.0
    if smoothed.ndim != 1 or (smoothed < 1.0).any():
        raise ValueError("item counts must be one non-negative count per item")
    return np.log(smoothed / smoothed.sum()).astype(np.float32)


def initial_bias(bias_init: str, num_items: int, item_counts: np.ndarray | None) -> np.ndarray:
    """The bias a fit starts from: zeros, or the popularity prior of `item_counts`."""
    if bias_init == "zero":
        return np.zeros(num_items, dtype=np.float32)
    if item_counts is None:
        raise ValueError("a head starting from the popularity prior needs the items' train interaction counts (item_counts)")
    if len(item_counts) != num_items:
        raise ValueError(f"item_counts has {len(item_counts)} counts for a catalogue of {num_items} items")
    return popularity_prior(item_counts)


class _HeadModule(nn.Module):
    """The head's parameters in torch: M = I + delta, so weight decay pulls towards plain cosine."""

    def __init__(self, item_embeddings: torch.Tensor, scale: float, residual: bool, bias: np.ndarray) -> None:
        super().__init__()
        items, dim = item_embeddings.shape
        self.register_buffer("keys", item_embeddings)
        self.scale = scale
        self.delta = nn.Parameter(torch.zeros(dim, dim, dtype=torch.float32))
        self.residual = nn.Parameter(torch.zeros(items, dim, dtype=torch.float32)) if residual else None
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))

    def item_vectors(self) -> torch.Tensor:
        vectors = self.keys + self.keys @ self.delta.T
        if self.residual is not None:
            vectors = vectors + self.residual
        return self.scale * vectors

    def to_head(self) -> ItemHead:
        dim = self.delta.shape[0]
        residual = self.residual if self.residual is not None else torch.zeros_like(self.keys)
        return ItemHead(
            (torch.eye(dim, dtype=torch.float32) + self.delta).detach().numpy().copy(),
            residual.detach().numpy().copy(),
            self.bias.detach().numpy().copy(),
            self.scale,
        )


def fit_item_head(
    item_embeddings: np.ndarray,
    train: HeadExamples,
    val: HeadExamples,
    cfg: ItemHeadConfig,
    seed: int,
    on_epoch: Callable[[int, dict], None] | None = None,
    item_counts: np.ndarray | None = None,
) -> FittedHead:
    """Fit a `cfg.kind` head on `train` over frozen normalised `item_embeddings` from each of
    cfg.starts, and keep the fit with the best val NDCG@10 (the first on a tie). Each fit keeps its
    state with the best val NDCG@10 (the untrained head included: a fit never ends worse on val
    than where it started) and stops after `cfg.patience` epochs without a gain. `on_epoch(epoch,
    record)` is called for every record of the kept fit. `item_counts` (train interactions per
    item, in the embeddings' order) is the popularity prior's, needed by a start from it.
    Deterministic given `seed`."""
    if cfg.kind == "none":
        raise ValueError("fit_item_head needs a head kind: 'linear' or 'hybrid'")
    keys = torch.tensor(np.asarray(item_embeddings), dtype=torch.float32)
    if keys.shape[1] != train.queries.shape[1] or keys.shape[1] != val.queries.shape[1]:
        raise ValueError(f"queries must have the items' dimension {keys.shape[1]}")
    fits = []
    for start in cfg.starts:
        fit = _fit_from(start, keys, train, val, cfg, seed, initial_bias(start.bias_init, len(keys), item_counts))
        log.info("item head from %s: best epoch %d, val NDCG@10 %.4f", start, fit.best_epoch, fit.best_val_ndcg)
        fits.append(fit)
    kept = max(fits, key=lambda fit: fit.best_val_ndcg)  # max keeps the first of equal values
    for record in kept.history:
        if on_epoch is not None:
            on_epoch(record["epoch"], record)
    return kept


def _fit_from(
    start: HeadStart,
    keys: torch.Tensor,
    train: HeadExamples,
    val: HeadExamples,
    cfg: ItemHeadConfig,
    seed: int,
    bias: np.ndarray,
) -> FittedHead:
    """One fit from `start`, its bias starting at `bias`."""
    module = _HeadModule(keys, start.scale, cfg.kind == "hybrid", bias)
    optimizer = torch.optim.AdamW(
        [
            {"params": [module.delta], "weight_decay": cfg.weight_decay},
            {"params": [p for p in (module.residual, module.bias) if p is not None], "weight_decay": 0.0},
        ],
        lr=cfg.learning_rate,
    )
    queries = torch.tensor(np.asarray(train.queries), dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(train.targets), dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)

    best_epoch, best_state = 0, copy.deepcopy(module.state_dict())
    history = [_record(0, None, module, val)]
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        losses = []
        for batch in torch.randperm(len(targets), generator=generator).split(cfg.batch_size):
            loss = _batch_loss(module, queries[batch], targets[batch], [train.histories[i] for i in batch], cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()) * len(batch))
        history.append(_record(epoch, sum(losses) / len(targets), module, val))
        if history[-1][VAL_METRIC] > history[best_epoch][VAL_METRIC]:
            best_epoch, best_state = epoch, copy.deepcopy(module.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    module.load_state_dict(best_state)
    return FittedHead(module.to_head(), history, best_epoch, start)


def fit_head_on_texts(
    encoder: TextEncoder,
    base: ItemIndex,
    train: TextRows,
    val: TextRows,
    cfg: ItemHeadConfig,
    seed: int,
    on_epoch: Callable[[int, dict], None] | None = None,
    item_counts: Mapping[str, int] | None = None,
) -> FittedHead:
    """Fit a head on query texts. `base` is the plain index of `encoder`'s item embeddings
    (normalised, no bias): its vectors are the frozen k_i, its positions place the targets.
    `item_counts`: train interactions by item id (absent = 0), for the popularity prior."""
    if base.bias is not None:
        raise ValueError("the base index must hold the encoder's plain item embeddings, without a bias")
    counts = None if item_counts is None else np.array([item_counts.get(i, 0) for i in base.item_ids.tolist()])
    return fit_item_head(
        base.vectors, train.encoded(encoder, base), val.encoded(encoder, base), cfg, seed, on_epoch, counts
    )


def _batch_loss(
    module: _HeadModule,
    queries: torch.Tensor,
    targets: torch.Tensor,
    histories: list[np.ndarray],
    cfg: ItemHeadConfig,
) -> torch.Tensor:
    """Mean full-catalogue cross-entropy, history items masked out of the softmax, plus the
    residual's L2 penalty."""
    logits = queries @ module.item_vectors().T + module.bias
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    if rows.size:
        columns = np.concatenate(histories)
        logits = logits.index_put((torch.from_numpy(rows), torch.from_numpy(columns)), torch.tensor(-torch.inf))
    loss = nn.functional.cross_entropy(logits, targets)
    if module.residual is not None:
        loss = loss + cfg.residual_l2 * module.residual.pow(2).sum()
    return loss


def _record(epoch: int, train_loss: float | None, module: _HeadModule, val: HeadExamples) -> dict:
    module.eval()
    return {"epoch": epoch, "train_loss": train_loss, VAL_METRIC: _val_ndcg(module.to_head(), module.keys, val)}


def _val_ndcg(head: ItemHead, keys: torch.Tensor, val: HeadExamples) -> float:
    """NDCG@10 of the val rows under `head`, ranked as at evaluation (rank_targets, in chunks)."""
    vectors = head.item_vectors(keys.numpy())
    ranks = ranks_in_chunks(
        lambda rows: val.queries[rows] @ vectors.T + head.bias, val.targets, val.histories, len(head)
    )
    return metrics.summarise(ranks, (10,))["ndcg@10"]
