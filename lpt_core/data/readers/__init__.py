"""Readers: every source format becomes the same three tables (interactions, items, quarantine).

Each reader maps its format onto `schemas.INTERACTIONS` and `schemas.ITEMS`. Malformed rows are
handled by one policy for all readers (`BadRows`): stop at the first one with an error that names
file, line and field, or set it aside in a quarantine table and go on. Raw files are only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data.errors import DataError
from lpt_core.paths import resolve_repo_path

QUARANTINE = pl.Schema(
    {
        "file": pl.String,
        "line": pl.Int64,  # 1-based line of the file (data row + 1 for a CSV header; row for parquet)
        "field": pl.String,  # null where the whole line is unreadable
        "reason": pl.String,
        "raw": pl.String,  # the offending input, cut to RAW_TEXT_LIMIT characters
    }
)
RAW_TEXT_LIMIT = 500

BadRowPolicy = Literal["error", "quarantine"]


@dataclass(frozen=True)
class RawData:
    """What a reader produced: canonical interactions and items, plus the rows it set aside."""

    interactions: pl.DataFrame  # schemas.INTERACTIONS
    items: pl.DataFrame  # schemas.ITEMS
    quarantine: pl.DataFrame  # QUARANTINE


class BadRows:
    """The bad-row policy for one input file: raise at the first bad row, or collect them all."""

    def __init__(self, path: Path, policy: BadRowPolicy) -> None:
        if policy not in ("error", "quarantine"):
            raise ValueError(f"bad_rows must be 'error' or 'quarantine', got {policy!r}")
        self.path = path
        self.policy = policy
        self._rows: list[tuple[str, int | None, str | None, str, str]] = []

    def add(self, line: int | None, field: str | None, reason: str, raw: str) -> None:
        """Report one bad row; raises DataError under the "error" policy."""
        if self.policy == "error":
            raise DataError(self.path, reason, line, field)
        self._rows.append((str(self.path), line, field, reason, raw[:RAW_TEXT_LIMIT]))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self._rows, schema=QUARANTINE, orient="row")


def cast_or_report(
    frame: pl.DataFrame,
    casts: dict[str, pl.DataType],
    required: set[str],
    lines: pl.Series,
    bad_rows: BadRows,
) -> pl.DataFrame:
    """Cast columns to `casts`, reporting rows whose value does not convert or is missing.

    `lines` gives each row's line number in the file, for the report. Returns the good rows of
    the `casts` columns only, cast.
    Text input is stripped first, so " 4 " reads as 4 but "four" is a bad value, never a null.
    """
    cast = frame.select(
        (pl.col(name).str.strip_chars() if frame.schema[name] == pl.String else pl.col(name))
        .cast(dtype, strict=False)
        for name, dtype in casts.items()
    )
    problems: dict[int, tuple[str, str]] = {}  # row -> the first bad field and why
    for name, dtype in casts.items():
        missing = frame[name].is_null()
        if frame.schema[name] == pl.String:
            missing = missing | (frame[name].str.strip_chars() == "")
        for row in (~missing & cast[name].is_null()).arg_true().to_list():
            problems.setdefault(row, (name, f"value does not convert to {dtype}"))
        if name in required:
            for row in missing.arg_true().to_list():
                problems.setdefault(row, (name, "missing value"))
    for row in sorted(problems):
        field, reason = problems[row]
        raw = ", ".join(f"{k}={v!r}" for k, v in frame.row(row, named=True).items())
        bad_rows.add(int(lines[row]), field, reason, raw)
    return cast.filter(~pl.Series(range(frame.height)).is_in(list(problems)))


def read_raw(cfg: DataConfig) -> RawData:
    """Read the recipe's data source; paths in the recipe are relative to the repository root."""
    path = resolve_repo_path(cfg.path)
    items_path = resolve_repo_path(cfg.items_path) if cfg.items_path else None
    # Imported here because the reader modules import RawData and BadRows from this package.
    if cfg.source == "movielens_100k":
        from lpt_core.data.readers.movielens import read_movielens_100k

        return read_movielens_100k(path)
    if cfg.source == "amazon_2023":
        from lpt_core.data.readers.amazon import read_amazon_2023

        if items_path is None:
            raise ValueError("data.items_path (the metadata file) is required for amazon_2023")
        return read_amazon_2023(path, items_path, bad_rows=cfg.bad_rows)
    if cfg.source == "tabular":
        from lpt_core.data.readers.tabular import read_tabular

        return read_tabular(path, items_path, dict(cfg.column_map), bad_rows=cfg.bad_rows)
    raise ValueError(f"unknown data.source {cfg.source!r}")
