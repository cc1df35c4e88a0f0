"""The catalogue's item index as the pipeline builds it: the item_catalog's texts embedded by a
recommender's encoder and indexed, with the recommender's item bias or item-side head when it has
one. The item_index asset builds it with the recipe's base encoder and trained_item_index with
each variant's trained recommender; a script that needs the pipeline's index builds it here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lpt_core.config import ModelsConfig
from lpt_core.models import load_encoder
from lpt_core.retrieval import IndexKind, ItemIndex, TextEncoder
from lpt_core.training.item_head import ItemHead, build_item_index


@dataclass(frozen=True)
class CatalogIndex:
    """An index of the catalogue, the encoder that embedded its items (it embeds the queries
    ranked against them) and the seconds the embedding took."""

    index: ItemIndex
    encoder: TextEncoder
    encode_seconds: float

    @property
    def items(self) -> int:
        return len(self.index.item_ids)


def index_catalog(
    item_catalog: pl.DataFrame,
    encoder: TextEncoder,
    kind: IndexKind = "flat",
    item_bias: np.ndarray | None = None,
    head: ItemHead | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CatalogIndex:
    """The catalogue's "text" column embedded by `encoder` and indexed by item id (cosine, plus
    the item bias or the item-side head's vectors and bias when given)."""
    started = time.perf_counter()
    embeddings = encoder.encode(item_catalog["text"].to_list(), progress=progress)
    seconds = time.perf_counter() - started
    index = build_item_index(item_catalog["item_id"].to_list(), embeddings, kind=kind, item_bias=item_bias, head=head)
    return CatalogIndex(index, encoder, seconds)


def base_catalog_index(
    item_catalog: pl.DataFrame, models_cfg: ModelsConfig, kind: IndexKind = "flat",
    progress: Callable[[int, int], None] | None = None,
) -> CatalogIndex:
    """The index of the recipe's untrained encoder (models.encoder): the item_index asset's."""
    encoder = TextEncoder(load_encoder(models_cfg.encoder, models_cfg))
    return index_catalog(item_catalog, encoder, kind, progress=progress)


def trained_catalog_index(
    item_catalog: pl.DataFrame, models_cfg: ModelsConfig, encoder_dir: Path, item_bias: Path | None = None,
    item_head: Path | None = None, kind: IndexKind = "flat",
) -> CatalogIndex:
    """The index of a trained recommender (its encoder folder, and the files of its item bias or
    item-side head if it has one): a trained_item_index variant's."""
    encoder = TextEncoder(load_encoder(str(encoder_dir), models_cfg))
    bias = None if item_bias is None else np.load(item_bias)
    head = None if item_head is None else ItemHead.load(item_head)
    return index_catalog(item_catalog, encoder, kind, item_bias=bias, head=head)
