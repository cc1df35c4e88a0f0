"""SASRec (Kang & McAuley, 2018): next-item prediction with causal self-attention over the history.

Why our own compact implementation rather than a library: it must read an UNSEEN user's N-item
history (the split holds out whole users) and rank our catalogue through the shared rank_targets,
inside our pins (torch 2.13, polars 2.x, no new dependency). Checked on PyPI: RecBole needs ray and
its own trainer/data pipeline; replay-rec resolves only with polars 1.x and pandas (it would
downgrade our polars 2.1 pin); cornac, implicit and LightFM are matrix/graph models that cannot
score an unseen user from a sequence. The model is ~100 lines of torch, so owning it costs little.

Architecture as in the paper: item + learned positional embeddings, `blocks` pre-norm transformer
blocks with causal attention, a final layer norm, and scores = hidden state . item embedding (tied
weights). Differences, each for a reason:
- Loss: full-softmax cross-entropy over the whole catalogue at every position, not the paper's
  binary loss with one sampled negative; CE is the stronger choice for SASRec (Klenitskiy &
  Vasilev, RecSys 2023) and a catalogue of thousands of items makes it cheap.
- Training windows: each train sequence is cut into consecutive windows of max_len + 1 items
  (from its end), so every transition of a long history is trained on, not only the last max_len.
- Sequences are left-padded: the most recent item always sits at the last position, as it does for
  a short evaluation history.
Early stopping keeps the epoch with the best validation metric (validation users' N-item histories,
targets ranked with history excluded, exactly as at evaluation).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lpt_core.atomic import atomic_dir
from lpt_core.metrics import metric_cutoff
from lpt_core.recommenders.scoring import validation_metric

PAD = 0  # item index 0 is padding; catalogue position p is item index p + 1
WEIGHTS_FILE = "sasrec.pt"
SETTINGS_FILE = "sasrec.json"
SCORING_BATCH = 256
INIT_STD = 0.02


@dataclass(frozen=True)
class SASRecConfig:
    """Model size, regularisation and training schedule (epochs is the cap; patience stops early)."""

    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    lr: float = 1e-3
    epochs: int = 200
    batch_size: int = 128
    patience: int = 5
    seed: int = 0
    metric: str = "ndcg@10"  # validation metric for early stopping (lpt_core.metrics name)

    def __post_init__(self) -> None:
        for name in ("hidden", "blocks", "heads", "max_len", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"SASRecConfig.hidden={self.hidden} must be divisible by heads={self.heads}")
        if not 0 <= self.dropout < 1 or self.lr <= 0:
            raise ValueError(f"SASRecConfig needs 0 <= dropout < 1 and lr > 0, got {self.dropout}, {self.lr}")
        metric_cutoff(self.metric)


class SASRec(nn.Module):
    """Causal self-attention over a left-padded item sequence; scores every catalogue item."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.cfg = cfg
        self.item_embedding = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=PAD)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.hidden, cfg.heads, dim_feedforward=cfg.hidden, dropout=cfg.dropout,
                activation="relu", batch_first=True, norm_first=True,
            )
            for _ in range(cfg.blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.hidden)
        # Small initial embeddings: with N(0, 1) the tied output layer starts with huge logits.
        nn.init.normal_(self.item_embedding.weight, std=INIT_STD)
        nn.init.normal_(self.position_embedding.weight, std=INIT_STD)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(batch, max_len) item indices (0 = padding) -> (batch, max_len, hidden) states."""
        real = (items != PAD).unsqueeze(-1)
        positions = torch.arange(items.shape[1], device=items.device)
        x = self.item_embedding(items) * math.sqrt(self.cfg.hidden) + self.position_embedding(positions)
        x = self.dropout(x) * real
        mask = self._attention_mask(items)
        for block in self.blocks:
            x = block(x, src_mask=mask) * real
        return self.final_norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item (positions 0..n_items-1) for each state."""
        return states @ self.item_embedding.weight[1:].T

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(rows x n_items) scores of the item following each history (catalogue positions)."""
        was_training = self.training
        self.eval()
        out = np.empty((len(histories), self.n_items), dtype=np.float32)
        try:
            with torch.no_grad():
                for start in range(0, len(histories), SCORING_BATCH):
                    batch = _left_padded(histories[start : start + SCORING_BATCH], self.cfg.max_len, self.n_items)
                    out[start : start + len(batch)] = self.logits(self(batch)[:, -1]).numpy()
        finally:
            self.train(was_training)
        return out

    def _attention_mask(self, items: torch.Tensor) -> torch.Tensor:
        """(batch * heads, L, L), True = blocked: the future and padding keys. A padded query may
        see itself, so no attention row is fully blocked (that would make NaNs)."""
        length = items.shape[1]
        future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=items.device), diagonal=1)
        blocked = future.unsqueeze(0) | (items == PAD).unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=items.device)
        return blocked.repeat_interleave(self.cfg.heads, dim=0)


def fit_sasrec(
    train_sequences: Sequence[Sequence[int]],
    val_histories: Sequence[Sequence[int]],
    val_targets: Sequence[int],
    n_items: int,
    cfg: SASRecConfig,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[SASRec, dict]:
    """Train on the train users' sequences; keep the epoch best on the validation users.

    `on_epoch(epoch, mean_train_loss, validation_metric)` is called after every epoch. Returns the
    model (best epoch's weights) and {"best_epoch", "epochs_run", "val_<metric>", "train_seconds",
    "windows"}.
    """
    if len(val_histories) != len(val_targets) or not len(val_targets):
        raise ValueError(f"need as many validation histories as targets (>0): {len(val_histories)}, {len(val_targets)}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    inputs, labels = _training_windows(train_sequences, cfg.max_len, n_items)
    model = SASRec(n_items, cfg)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    best_metric, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        loss = _train_epoch(model, optimiser, inputs, labels, cfg.batch_size, rng)
        metric = validation_metric(model, val_histories, val_targets, cfg.metric)
        if on_epoch is not None:
            on_epoch(epoch, loss, metric)
        if metric > best_metric:
            best_metric, best_epoch, best_state = metric, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    info = {
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        f"val_{cfg.metric}": best_metric,
        "train_seconds": time.perf_counter() - started,
        "windows": int(inputs.shape[0]),
    }
    return model, info


def save_sasrec(model: SASRec, folder: Path) -> Path:
    """Weights and settings, written together: the folder appears only when both are done."""
    with atomic_dir(folder) as tmp:
        torch.save(model.state_dict(), tmp / WEIGHTS_FILE)
        settings = {"n_items": model.n_items, "config": asdict(model.cfg)}
        (tmp / SETTINGS_FILE).write_text(json.dumps(settings), encoding="utf-8")
    return Path(folder)


def load_sasrec(folder: Path) -> SASRec:
    """A model saved by save_sasrec, in eval mode."""
    folder = Path(folder)
    for name in (WEIGHTS_FILE, SETTINGS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing (not a SASRec folder?)")
    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    model = SASRec(settings["n_items"], SASRecConfig(**settings["config"]))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return model.eval()


def _train_epoch(
    model: SASRec, optimiser: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor,
    batch_size: int, rng: np.random.Generator,
) -> float:
    model.train()
    order = torch.from_numpy(rng.permutation(inputs.shape[0]))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        items, targets = inputs[batch], labels[batch]
        real = targets >= 0
        # Logits only where there is a next item: padding positions would cost a full softmax each.
        loss = nn.functional.cross_entropy(model.logits(model(items)[real]), targets[real])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += loss.item() * int(real.sum())
        count += int(real.sum())
    return total / max(count, 1)


def _training_windows(
    sequences: Sequence[Sequence[int]], max_len: int, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (inputs, next-item labels) windows; labels are positions, -1 where padded."""
    inputs, labels = [], []
    for row, sequence in enumerate(sequences):
        sequence = [int(p) for p in sequence]
        _check_range(sequence, n_items, "train_sequences", row)
        for end in range(len(sequence), 1, -max_len):
            window = sequence[max(0, end - max_len - 1) : end]
            pad = max_len - (len(window) - 1)
            inputs.append([PAD] * pad + [p + 1 for p in window[:-1]])
            labels.append([-1] * pad + window[1:])
    if not inputs:
        raise ValueError("no train sequence has two items: nothing to learn a next item from")
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def _left_padded(histories: Sequence[Sequence[int]], max_len: int, n_items: int) -> torch.Tensor:
    """The last max_len items of each history as item indices, padded on the left."""
    rows = []
    for row, history in enumerate(histories):
        recent = [int(p) for p in list(history)[-max_len:]]
        _check_range(recent, n_items, "histories", row)
        rows.append([PAD] * (max_len - len(recent)) + [p + 1 for p in recent])
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), max_len)


def _check_range(sequence: list[int], n_items: int, argument: str, row: int) -> None:
    if sequence and (min(sequence) < 0 or max(sequence) >= n_items):
        raise ValueError(f"{argument}[{row}]: item positions must lie in [0, {n_items}), got {sequence}")
