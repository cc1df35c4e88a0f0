"""Readers: every source format becomes the same three tables (interactions, items, quarantine).

Each reader maps its format onto `schemas.INTERACTIONS` and `schemas.ITEMS`. Malformed rows are
handled by one policy for all readers (`BadRows`): stop at the first one with an error that names
file, line and field, or set it aside in a quarantine table and go on. Every row read is accounted
for, per file (`InputAccount`): kept, quarantined, or skipped on purpose (blank lines, repeated
item ids). Raw files are only read.
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data.errors import DataError
from lpt_core.paths import resolve_repo_path
from lpt_core.sources import data_source

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
# Unix times below this are read as seconds: in milliseconds they would fall before 1973-03-03,
# in seconds they reach the year 5138, so no real data set is ambiguous.
SECONDS_BELOW = 10**11

BadRowPolicy = Literal["error", "quarantine"]


@dataclass(frozen=True)
class InputAccount:
    """Where the rows of one input file went; kept + quarantined + skipped is every row read."""

    file: str
    rows: int  # data rows (CSV, parquet) or lines (JSON lines) in the file, blank ones included
    kept: int
    quarantined: int
    skipped: dict[str, int] = field(default_factory=dict)  # why -> rows left out on purpose
    nulled: dict[str, int] = field(default_factory=dict)  # field -> optional values read as null
    timestamps_in_seconds: int = 0  # timestamps read as seconds (< SECONDS_BELOW), made ms

    def __post_init__(self) -> None:
        accounted = self.kept + self.quarantined + sum(self.skipped.values())
        if accounted != self.rows:
            raise ValueError(f"{self.file}: {accounted:,} rows accounted for, {self.rows:,} read")


@dataclass(frozen=True)
class RawData:
    """What a reader produced: canonical interactions and items, plus the rows it set aside."""

    interactions: pl.DataFrame  # schemas.INTERACTIONS
    items: pl.DataFrame  # schemas.ITEMS
    quarantine: pl.DataFrame  # QUARANTINE
    accounts: tuple[InputAccount, ...] = ()  # one per input file read


class BadRows:
    """The bad-row policy for one input file (raise at the first bad row, or collect them all),
    and its ledger of what else happened to its rows, for the file's InputAccount."""

    def __init__(self, path: Path, policy: BadRowPolicy) -> None:
        if policy not in ("error", "quarantine"):
            raise ValueError(f"bad_rows must be 'error' or 'quarantine', got {policy!r}")
        self.path = path
        self.policy = policy
        self._rows: list[tuple[str, int | None, str | None, str, str]] = []
        self._skipped: Counter[str] = Counter()
        self._nulled: Counter[str] = Counter()
        self.timestamps_in_seconds = 0  # set by timestamps_in_ms

    def add(self, line: int | None, field: str | None, reason: str, raw: str) -> None:
        """Report one bad row; raises DataError under the "error" policy."""
        if self.policy == "error":
            raise DataError(self.path, reason, line, field)
        self._rows.append((str(self.path), line, field, reason, raw[:RAW_TEXT_LIMIT]))

    def skip(self, why: str, rows: int) -> None:
        """Count rows left out on purpose (not bad data), so none disappears uncounted."""
        if rows:
            self._skipped[why] += rows

    def null(self, field: str, values: int) -> None:
        """Count values of an optional field that did not convert and were read as null."""
        if values:
            self._nulled[field] += values

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self._rows, schema=QUARANTINE, orient="row")

    def account(self, rows: int, kept: int) -> InputAccount:
        return InputAccount(
            file=str(self.path),
            rows=rows,
            kept=kept,
            quarantined=len(self._rows),
            skipped=dict(self._skipped),
            nulled=dict(self._nulled),
            timestamps_in_seconds=self.timestamps_in_seconds,
        )


def timestamps_in_ms(interactions: pl.DataFrame, bad_rows: BadRows) -> pl.DataFrame:
    """Timestamps in milliseconds, the canonical unit, whichever unit each row was written in.

    Amazon's files and the tabular reader document milliseconds, but files in seconds are common:
    read as milliseconds they would put every event in January 1970. Values below SECONDS_BELOW
    are taken as seconds, and counted in the file's account.
    """
    seconds = pl.col("timestamp").abs() < SECONDS_BELOW
    bad_rows.timestamps_in_seconds += interactions.select(seconds.sum()).item()
    return interactions.with_columns(
        pl.when(seconds).then(pl.col("timestamp") * 1000).otherwise(pl.col("timestamp"))
    )


def require_files(*paths: Path, hint: str = "") -> None:
    """Fail before reading anything when an input file is missing, not after hours of reading."""
    for path in paths:
        if not Path(path).is_file():
            raise DataError(path, f"file not found ({hint})" if hint else "file not found")


def skip_blank_rows(frame: pl.DataFrame, first_line: int, bad_rows: BadRows) -> tuple[pl.DataFrame, pl.Series]:
    """Drop rows with every cell empty (blank lines), counting them; returns the other rows and
    their 1-based line numbers, `first_line` being the line of the frame's first row."""
    lines = pl.Series("line", range(first_line, first_line + frame.height))
    blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
    bad_rows.skip("blank line", blank.sum())
    return frame.filter(~blank), lines.filter(~blank)


def unique_items(items: pl.DataFrame, bad_rows: BadRows, id_name: str) -> pl.DataFrame:
    """One row per item id, the first one read; the repeats are counted as skipped."""
    unique = items.unique("item_id", keep="first", maintain_order=True)
    bad_rows.skip(f"repeated {id_name} (first kept)", items.height - unique.height)
    return unique


def _converted(column: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """The one conversion rule of every reader: text is stripped first, and an integer may be
    written as a whole float ("1995.0", as pandas writes an integer column that holds nulls)."""
    if source == pl.String:
        column = column.str.strip_chars()
    if target.is_integer() and (source == pl.String or source.is_float()):
        number = column.cast(pl.Float64, strict=False)
        whole = pl.when(number == number.floor()).then(number).cast(target, strict=False)
        if source == pl.String:  # digits alone convert exactly, even beyond float precision
            return pl.coalesce(column.cast(target, strict=False), whole)
        return whole
    return column.cast(target, strict=False)


def cast_or_report(
    frame: pl.DataFrame,
    casts: dict[str, pl.DataType],
    required: set[str],
    lines: pl.Series,
    bad_rows: BadRows,
) -> pl.DataFrame:
    """Cast columns to `casts`; a row whose required value is missing or does not convert is bad.

    `lines` gives each row's line number in the file, for the report. An optional value that does
    not convert becomes null and is counted (one odd field must not cost the whole row). Returns
    the good rows of the `casts` columns only, cast. Text is stripped first, so " 4 " reads as 4.
    """
    cast = frame.select(
        _converted(pl.col(name), frame.schema[name], dtype).alias(name) for name, dtype in casts.items()
    )
    problems: dict[int, tuple[str, str]] = {}  # row -> the first bad field and why
    unconverted: dict[str, pl.Series] = {}  # per column: a value was given but did not convert
    for name, dtype in casts.items():
        missing = frame[name].is_null()
        if frame.schema[name] == pl.String:
            missing = missing | (frame[name].str.strip_chars() == "")
        unconverted[name] = ~missing & cast[name].is_null()
        if name in required:
            for row in (unconverted[name] | missing).arg_true().to_list():
                reason = "missing value" if missing[row] else f"value does not convert to {dtype}"
                problems.setdefault(row, (name, reason))
    for row in sorted(problems):
        field_name, reason = problems[row]
        raw = ", ".join(f"{k}={v!r}" for k, v in frame.row(row, named=True).items())
        bad_rows.add(int(lines[row]), field_name, reason, raw)
    good = ~pl.Series(range(frame.height)).is_in(list(problems))
    for name in casts:
        if name not in required:
            bad_rows.null(name, (unconverted[name] & good).sum())
    return cast.filter(good)


def read_raw(cfg: DataConfig) -> RawData:
    """Read the recipe's data source; paths in the recipe are relative to the repository root.

    Fails when more than `cfg.max_quarantine_share` of a file's rows were quarantined: a file that
    is mostly bad is a wrong format or mapping, not a few bad lines.
    """
    path = resolve_repo_path(cfg.path)
    items_path = resolve_repo_path(cfg.items_path) if cfg.items_path else None
    # Imported by name here: the reader modules import RawData and BadRows from this package.
    reader = importlib.import_module(data_source(cfg.source).reader)
    raw = reader.read(cfg, path, items_path)
    _check_quarantine_share(raw, cfg.max_quarantine_share)
    return raw


def _check_quarantine_share(raw: RawData, max_share: float) -> None:
    """Raise DataError, with the counts, for the first file whose quarantined share is too high."""
    for account in raw.accounts:
        data_rows = account.kept + account.quarantined
        if not account.quarantined or account.quarantined / data_rows <= max_share:
            continue
        by_field = (
            raw.quarantine.filter(pl.col("file") == account.file)
            .group_by(pl.col("field").fill_null("(whole line)"))
            .len()
            .sort("len", "field", descending=[True, False])
        )
        fields = ", ".join(f"{name} {count:,}" for name, count in by_field.iter_rows())
        raise DataError(
            account.file,
            f"{account.quarantined:,} of {data_rows:,} rows quarantined "
            f"({account.quarantined / data_rows:.1%}, above data.max_quarantine_share "
            f"{max_share:.1%}); by field: {fields}; {account.kept:,} rows kept",
        )
