"""History-reading recommenders evaluated beside the text methods: SASRec and item-to-item kNN.

Both are trained on train users only and score an unseen user from their N-item history, over the
catalogue positions of the evaluation index, so `lpt_core.baselines` ranks them with the same
rank_targets as every other method. This module stores a fitted set in one folder and loads it
back for evaluation, checking that the catalogue is the one being ranked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from lpt_core.atomic import atomic_dir
from lpt_core.recommenders.item_knn import ItemKNN
from lpt_core.recommenders.sasrec import SASRec, SASRecConfig, fit_sasrec, load_sasrec, save_sasrec
from lpt_core.recommenders.scoring import HistoryScorer, target_ranks, validation_metric

__all__ = [
    "HistoryScorer", "ItemKNN", "SASRec", "SASRecConfig", "fit_sasrec", "load_baseline_models",
    "load_sasrec", "save_baseline_models", "save_sasrec", "target_ranks", "validation_metric",
]

MANIFEST_FILE = "manifest.json"
KINDS = {SASRec: "sasrec", ItemKNN: "item_knn"}
SAVERS = {"sasrec": save_sasrec, "item_knn": ItemKNN.save}
LOADERS = {"sasrec": load_sasrec, "item_knn": ItemKNN.load}


def save_baseline_models(
    folder: Path, models: Mapping[str, HistoryScorer], item_ids: Sequence[str], settings: Mapping
) -> dict[str, Path]:
    """Write each model into folder/<method name>/ with a manifest naming the catalogue and the
    chosen settings; the folder replaces any previous one only once everything is written."""
    folder = Path(folder)
    manifest = {"item_ids": list(item_ids), "models": {}, "settings": dict(settings)}
    with atomic_dir(folder) as tmp:
        for name, model in models.items():
            kind = KINDS.get(type(model))
            if kind is None:
                raise TypeError(f"model {name!r}: cannot save a {type(model).__name__}")
            if model.n_items != len(item_ids):
                raise ValueError(f"model {name!r} scores {model.n_items} items, the catalogue has {len(item_ids)}")
            SAVERS[kind](model, tmp / name)
            manifest["models"][name] = kind
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return {name: folder / name for name in models} | {"manifest": folder / MANIFEST_FILE}


def load_baseline_models(folder: Path, item_ids: Sequence[str]) -> dict[str, HistoryScorer]:
    """The models saved in `folder`, by method name; an error if they were fitted on another
    catalogue (or the same items in another order) than `item_ids`."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a baseline models folder?)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest["item_ids"] != [str(i) for i in item_ids]:
        raise ValueError(
            f"{path}: models were fitted on a catalogue of {len(manifest['item_ids'])} items that differs "
            f"from the {len(item_ids)} being ranked; rematerialise baseline_models"
        )
    return {name: LOADERS[kind](folder / name) for name, kind in manifest["models"].items()}
