"""MovieLens-100K in RecBole's atomic-file format (as shipped in the recbole 1.2.1 wheel).

Files are TAB separated with a typed header line:
  ml-100k.inter: user_id:token item_id:token rating:float timestamp:float (Unix seconds)
  ml-100k.item:  item_id:token movie_title:token_seq release_year:token class:token_seq
Genres are space separated single words ("Children's" and "Film-Noir" included). The file marks
unknowns with placeholders (item 267's title and year are "unkonwn", the genre flag "unknown"),
which are read as missing values so they never reach item texts (any other year that is not a
number is counted in the file's account, like any optional value that does not convert).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data import schemas
from lpt_core.data.errors import DataError
from lpt_core.data.readers import BadRows, InputAccount, RawData, cast_or_report, require_files, skip_blank_rows

INTERACTIONS_FILE = "ml-100k.inter"
ITEMS_FILE = "ml-100k.item"
INTERACTIONS_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
ITEMS_HEADER = ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]
UNKNOWN_TITLES = {"unknown", "unkonwn"}  # the placeholders of titles and years
UNKNOWN_GENRE = "unknown"


def read_movielens_100k(folder: Path) -> RawData:
    """Read ml-100k.inter and ml-100k.item from `folder`; any malformed row is a DataError."""
    folder = Path(folder)
    require_files(folder / INTERACTIONS_FILE, folder / ITEMS_FILE, hint="fetch MovieLens-100K first")
    interactions, interactions_account = _read_interactions(folder / INTERACTIONS_FILE)
    items, items_account = _read_items(folder / ITEMS_FILE)
    return RawData(
        interactions=interactions,
        items=items,
        quarantine=BadRows(folder, "error").frame(),
        accounts=(interactions_account, items_account),
    )


def _read_atomic(path: Path, header: list[str], bad_rows: BadRows) -> tuple[pl.DataFrame, pl.Series, int]:
    """The file's non-blank rows (text, header names without types), their lines, and all rows."""
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        frame = pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DataError(path, f"not a TAB-separated atomic file: {exc}") from exc
    if frame.columns != header:
        raise DataError(path, f"header is {frame.columns}, expected {header}", line=1)
    frame = frame.rename(dict(zip(header, (name.split(":")[0] for name in header))))
    kept, lines = skip_blank_rows(frame, 2, bad_rows)  # line 1 is the header
    return kept, lines, frame.height


def _read_interactions(path: Path) -> tuple[pl.DataFrame, InputAccount]:
    bad_rows = BadRows(path, "error")
    frame, lines, rows = _read_atomic(path, INTERACTIONS_HEADER, bad_rows)
    typed = cast_or_report(
        frame,
        {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float32, "timestamp": pl.Float64},
        required={"user_id", "item_id", "rating", "timestamp"},  # every row of the format has all four
        lines=lines,
        bad_rows=bad_rows,
    )
    bad_rows.timestamp_units["seconds"] = typed.height  # the format's unit, converted here
    interactions = typed.with_columns(
        (pl.col("timestamp") * 1000).round().cast(pl.Int64),
        pl.lit(None, dtype=pl.String).alias("review"),
    )
    return schemas.conform(interactions, schemas.INTERACTIONS), bad_rows.account(rows, typed.height)


def _read_items(path: Path) -> tuple[pl.DataFrame, InputAccount]:
    bad_rows = BadRows(path, "error")
    frame, lines, rows = _read_atomic(path, ITEMS_HEADER, bad_rows)
    # The placeholder is a missing year, not one that failed to convert (those are counted).
    placeholder = pl.col("release_year").str.to_lowercase().is_in(UNKNOWN_TITLES)
    frame = frame.with_columns(pl.when(~placeholder).then(pl.col("release_year")))
    typed = cast_or_report(
        frame,
        {"item_id": pl.String, "movie_title": pl.String, "release_year": pl.Int32, "class": pl.String},
        required={"item_id"},
        lines=lines,
        bad_rows=bad_rows,
    )
    title = pl.col("movie_title").str.strip_chars()
    genres = pl.col("class").fill_null("").str.split(" ")
    items = typed.select(
        "item_id",
        pl.when(title.str.to_lowercase().is_in(UNKNOWN_TITLES) | (title == ""))
        .then(None)
        .otherwise(title)
        .alias("title"),
        pl.col("release_year").alias("year"),
        pl.lit(None, dtype=pl.String).alias("description"),
        genres.list.eval(pl.element().filter((pl.element() != "") & (pl.element() != UNKNOWN_GENRE)))
        .alias("categories"),
        pl.lit(None, dtype=pl.String).alias("price"),
        pl.lit(None, dtype=pl.Float32).alias("average_rating"),
    )
    return schemas.conform(items, schemas.ITEMS), bad_rows.account(rows, typed.height)


def read(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    """The recipe's data through this reader (lpt_core.sources names it); paths already resolved."""
    return read_movielens_100k(path)
