"""Every data source the pipeline reads, described in one place.

A source is a reader module (lpt_core/data/readers/, with a `read(cfg, path, items_path)`) plus
the words the rest of the method uses for it: the paper's profile instruction, the simulated
reader's question, what the steerability edit calls its items, and which recipe fields it needs.
Adding a source is one reader module and one entry in SOURCES; config.DataConfig.source accepts
exactly these names.

The reader is named, not imported: readers import the config, and the config imports this module
(and must load where polars is not installed, as on the GPU benchmark machine).
"""

from __future__ import annotations

from dataclasses import dataclass

_SUMMARY_REQUEST = "Please give a detailed, high-level summary of the user's preferences."


@dataclass(frozen=True)
class DataSource:
    """One data source: its reader module and its words."""

    name: str
    # The module that reads it: it has `read(cfg: DataConfig, path, items_path) -> RawData`.
    reader: str
    # The paper's instruction for a profile of this source's histories (prompt.instruction: null).
    instruction: str
    # The simulated reader's question before the candidates (profile quality report).
    reader_question: str
    # What the steerability edit calls the items: "They love Horror {item_noun}."
    item_noun: str
    needs_items_path: bool = False
    needs_column_map: bool = False
    # data.path names a folder (MovieLens' atomic files), not a file.
    path_is_folder: bool = False


SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource(
            name="movielens_100k",
            reader="lpt_core.data.readers.movielens",
            instruction=f"The user rated (out of 5) the following movies, listed from oldest to newest. {_SUMMARY_REQUEST}",
            reader_question="Which movie would this user watch next?",
            item_noun="movies",
            path_is_folder=True,
        ),
        DataSource(
            name="amazon_2023",
            reader="lpt_core.data.readers.amazon",
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
            reader="lpt_core.data.readers.tabular",
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
