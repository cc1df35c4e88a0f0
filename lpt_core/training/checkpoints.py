"""Phase checkpoints of the alternating training: what a run resumes from after an interruption.

A checkpoint is one folder per finished phase, written atomically (lpt_core.atomic.atomic_dir): the
LoRA adapter, the recommender encoder, the item bias or the item-side head if any, and state.json,
which names the round, the phase, the recipe hash and the variant. Optimizer states are not kept: every phase
starts fresh optimizers (lpt_core.training.alternation), so a resumed run loses nothing.

A folder is trusted only when its state.json is there and names the same recipe hash and variant:
a half-written folder (a hidden ".part" temporary, or anything without state.json) or one from
another recipe or variant is never loaded.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.atomic import atomic_dir
from lpt_core.training.item_head import ItemHead

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
ADAPTER_DIR = "adapter"
ENCODER_DIR = "encoder"
ITEM_BIAS_FILE = "item_bias.npy"
ITEM_HEAD_FILE = "item_head.npz"
# Within a round the decoder (contrastive) phase comes first, then the encoder (RL) phase.
PHASE_ORDER = {"decoder": 0, "encoder": 1}


@dataclass(frozen=True)
class PhaseCheckpoint:
    """A finished phase's folder and its state.json."""

    path: Path
    round: int
    phase: str
    state: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def encoder_dir(self) -> Path:
        return self.path / ENCODER_DIR

    @property
    def item_bias_path(self) -> Path | None:
        path = self.path / ITEM_BIAS_FILE
        return path if path.is_file() else None

    def load_item_bias(self) -> np.ndarray | None:
        path = self.item_bias_path
        return None if path is None else np.load(path)

    @property
    def item_head_path(self) -> Path | None:
        path = self.path / ITEM_HEAD_FILE
        return path if path.is_file() else None

    def load_item_head(self) -> ItemHead | None:
        path = self.item_head_path
        return None if path is None else ItemHead.load(path)


def phase_folder(root: Path, recipe_hash: str, variant: str, round_index: int, phase: str) -> Path:
    """Where a phase's checkpoint lives: names sort in training order within a recipe and variant."""
    return Path(root) / f"{variant}-{recipe_hash}-round{round_index:03d}-{PHASE_ORDER[phase]}-{phase}"


def save_phase(
    root: Path,
    round_index: int,
    phase: str,
    policy: Any,
    encoder: Any,
    item_bias: np.ndarray | None,
    state: dict[str, Any],
    item_head: ItemHead | None = None,
) -> Path:
    """Write a finished phase's checkpoint under `root` and return its folder.

    `policy` is a PeftModel (its adapter is saved, not the base weights), `encoder` a
    SentenceTransformer, `item_head` the head fitted over that encoder's item embeddings. `state` must hold "recipe_hash" and "variant" and anything JSON-able to
    keep (a metrics summary, the history so far); round, phase and completion time are added.
    state.json is written last, inside the temporary folder that becomes the checkpoint.
    """
    if phase not in PHASE_ORDER:
        raise ValueError(f"phase must be one of {sorted(PHASE_ORDER)}, got {phase!r}")
    missing = [key for key in ("recipe_hash", "variant") if not state.get(key)]
    if missing:
        raise ValueError(f"state lacks {missing}: a checkpoint must say which recipe and variant it is")
    folder = phase_folder(root, state["recipe_hash"], state["variant"], round_index, phase)
    full_state = {
        **state,
        "round": round_index,
        "phase": phase,
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_dir(folder) as tmp:
        policy.save_pretrained(str(tmp / ADAPTER_DIR))
        encoder.save(str(tmp / ENCODER_DIR))
        if item_bias is not None:
            np.save(tmp / ITEM_BIAS_FILE, np.asarray(item_bias, dtype=np.float32))
        if item_head is not None:
            item_head.save(tmp / ITEM_HEAD_FILE)
        text = json.dumps(full_state, indent=2, sort_keys=True, default=_json_scalar)
        (tmp / STATE_FILE).write_text(text, encoding="utf-8")
    return folder


def latest_phase(root: Path, recipe_hash: str, variant: str) -> PhaseCheckpoint | None:
    """The last finished phase of this recipe and variant under `root`, or None.

    Hidden folders (atomic_dir's temporaries), folders without a readable state.json and those of
    another recipe hash or variant are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    found = [c for c in map(_read_checkpoint, root.iterdir()) if c is not None]
    matching = [c for c in found if c.state.get("recipe_hash") == recipe_hash and c.state.get("variant") == variant]
    if not matching:
        return None
    return max(matching, key=lambda c: (c.round, PHASE_ORDER[c.phase]))


def prune_earlier_phases(root: Path, keep: PhaseCheckpoint) -> list[Path]:
    """Delete the finished phases of `keep`'s recipe and variant that come before it.

    Resume needs only the latest phase, and each checkpoint holds a full copy of the encoder
    (about 90 MB for MiniLM, over 1 GB for large encoders), so earlier ones only fill the disk.
    The checkpoint to keep must already be complete (have its state.json) when this is called.
    """
    order = (keep.round, PHASE_ORDER[keep.phase])
    removed = []
    for checkpoint in filter(None, map(_read_checkpoint, Path(root).iterdir())):
        same_run = all(checkpoint.state.get(k) == keep.state.get(k) for k in ("recipe_hash", "variant"))
        if same_run and (checkpoint.round, PHASE_ORDER[checkpoint.phase]) < order:
            shutil.rmtree(checkpoint.path)
            removed.append(checkpoint.path)
    return removed


def _json_scalar(value: Any) -> Any:
    # Metrics arrive as numpy or torch scalars as often as floats; both have .item().
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"state value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def _read_checkpoint(folder: Path) -> PhaseCheckpoint | None:
    state_file = folder / STATE_FILE
    if folder.name.startswith(".") or not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        checkpoint = PhaseCheckpoint(folder, int(state["round"]), str(state["phase"]), state)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable, skipped: %s", state_file, exc)
        return None
    if checkpoint.phase not in PHASE_ORDER:
        log.warning("%s: unknown phase %r, skipped", state_file, checkpoint.phase)
        return None
    return checkpoint
