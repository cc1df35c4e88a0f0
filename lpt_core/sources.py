"""Every data source the pipeline reads, described in one place.

A source is a reader (lpt_core/data/readers/<source>.py) plus the words the rest of the method
uses for it: the paper's profile instruction, the simulated reader's question, what the
steerability edit calls its items, and which recipe fields it needs. Adding a source is one
reader module and one entry in SOURCES; config.DataConfig.source accepts exactly these names.

Readers are imported when a source is read, not here: this module is imported by the config,
which must load where polars is not installed (the GPU benchmark machine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lpt_core.config import DataConfig
    from lpt_core.data.readers import RawData

_SUMMARY_REQUEST = "Please give a detailed, high-level summary of the user's preferences."


@dataclass(frozen=True)
class DataSource:
    """One data source. `read(cfg, path, items_path)` gets the recipe's data section and its paths
    already resolved against the repository root."""

    name: str
    read: Callable[[DataConfig, Path, Path | None], RawData]
    # The paper's instruction for a profile of this source's histories (prompt.instruction: null).
    instruction: str
    # The simulated reader's question before the candidates (profile quality report).
    reader_question: str
    # What the steerability edit calls the items: "They love Horror {item_noun}."
    item_noun: str
    needs_items_path: bool = False
    needs_column_map: bool = False


def _read_movielens_100k(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    from lpt_core.data.readers.movielens import read_movielens_100k

    return read_movielens_100k(path)


def _read_amazon_2023(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    from lpt_core.data.readers.amazon import read_amazon_2023

    assert items_path is not None  # DataConfig requires it for this source
    return read_amazon_2023(path, items_path, bad_rows=cfg.bad_rows)


def _read_tabular(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    from lpt_core.data.readers.tabular import read_tabular

    return read_tabular(path, items_path, dict(cfg.column_map), bad_rows=cfg.bad_rows)


SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource(
            name="movielens_100k",
            read=_read_movielens_100k,
            instruction=f"The user rated (out of 5) the following movies, listed from oldest to newest. {_SUMMARY_REQUEST}",
            reader_question="Which movie would this user watch next?",
            item_noun="movies",
        ),
        DataSource(
            name="amazon_2023",
            read=_read_amazon_2023,
            instruction=(
                "The user rated (out of 5.0) and reviewed the following movies and TV shows, listed from "
                f"oldest to newest. {_SUMMARY_REQUEST}"
            ),
            reader_question="Which movie or TV show would this user watch next?",
            item_noun="movies and shows",
            needs_items_path=True,
        ),
        DataSource(
            name="tabular",
            read=_read_tabular,
            instruction=f"The user rated (out of 5) the following items, listed from oldest to newest. {_SUMMARY_REQUEST}",
            reader_question="Which item would this user choose next?",
            item_noun="items",
            needs_column_map=True,
        ),
    )
}


def data_source(name: str) -> DataSource:
    """The source named `name`; a ValueError listing the known ones otherwise."""
    if name not in SOURCES:
        raise ValueError(f"unknown data.source {name!r}: expected one of {', '.join(SOURCES)}")
    return SOURCES[name]
