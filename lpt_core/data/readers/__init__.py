"""Readers: every source format becomes the same three tables (interactions, items, quarantine).

Each reader maps its format onto `schemas.INTERACTIONS` and `schemas.ITEMS`. Malformed rows are
handled by one policy for all readers (`BadRows`): stop at the first one with an error that names
file, line and field, or set it aside in a quarantine table and go on. Every row read is accounted
for, per file (`InputAccount`): kept, quarantined, or skipped on purpose (blank lines, repeated
item ids). Raw files are only read.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data import schemas
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
# Unix times are read in the unit their magnitude gives: each bound is where the smaller unit
# would pass the year 5138 and the larger one would still be before 1973-03-03, so no real data
# set is ambiguous. Milliseconds (10^11 to 10^14) are the canonical unit.
# Unit -> (magnitude from, magnitude below, and ms = value * multiplier // divisor).
TIMESTAMP_UNITS: dict[str, tuple[int, int | None, int, int]] = {
    "seconds": (0, 10**11, 1000, 1),
    "microseconds": (10**14, 10**17, 1, 1000),
    "nanoseconds": (10**17, None, 1, 10**6),
}
# Text timestamps (a CSV's "2016-10-16 17:57:24"): ISO 8601 forms, without a zone read as UTC.
# Day-first and month-first dates ("10/11/2016") are left out on purpose: they are ambiguous.
TEXT_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
)
TEXT_TIME_FORMATS_WITH_ZONE = ("%+", "%Y-%m-%d %H:%M:%S%.f%#z")
TEXT_TIME_EXPECTED = "a date such as 2016-10-16, 2016-10-16 17:57:24 or 2016-10-16T17:57:24+02:00"
# An optional value that looks like a number written with a decimal comma ("2,5").
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")

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
    null_examples: dict[str, str] = field(default_factory=dict)  # field -> one such value, as given
    timestamp_units: dict[str, int] = field(default_factory=dict)  # unit -> timestamps made ms from it

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
        self._null_examples: dict[str, str] = {}
        self.timestamp_units: Counter[str] = Counter()  # counted by timestamps_in_ms

    def add(self, line: int | None, field: str | None, reason: str, raw: str) -> None:
        """Report one bad row; raises DataError under the "error" policy."""
        if self.policy == "error":
            raise DataError(self.path, reason, line, field)
        self._rows.append((str(self.path), line, field, reason, raw[:RAW_TEXT_LIMIT]))

    def skip(self, why: str, rows: int) -> None:
        """Count rows left out on purpose (not bad data), so none disappears uncounted."""
        if rows:
            self._skipped[why] += rows

    def null(self, field: str, values: int, example: str) -> None:
        """Count values of an optional field that did not convert and were read as null; the first
        example is kept for the message of a field that mostly fails (see read_raw)."""
        if values:
            self._nulled[field] += values
            self._null_examples.setdefault(field, example[:RAW_TEXT_LIMIT])

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
            null_examples=dict(self._null_examples),
            timestamp_units={unit: n for unit, n in self.timestamp_units.items() if n},
        )


def timestamps_in_ms(interactions: pl.DataFrame, bad_rows: BadRows) -> pl.DataFrame:
    """Timestamps in milliseconds, the canonical unit, whichever unit each row was written in.

    Amazon's files and the tabular reader document milliseconds, but files in seconds are common,
    and microseconds or nanoseconds come from databases and pandas: read as milliseconds they put
    events in 1970 or the year 49503. Each row's unit comes from its magnitude (TIMESTAMP_UNITS),
    and the rows read in each unit other than milliseconds are counted in the file's account.
    """
    timestamp = pl.col("timestamp")
    in_ms = timestamp
    for unit, (low, high, multiplier, divisor) in TIMESTAMP_UNITS.items():
        in_unit = timestamp.abs() >= low
        if high is not None:
            in_unit = in_unit & (timestamp.abs() < high)
        bad_rows.timestamp_units[unit] += interactions.select(in_unit.sum()).item()
        # Integer floor division: a finer time belongs to the millisecond it falls in, exactly.
        in_ms = pl.when(in_unit).then(timestamp * multiplier // divisor).otherwise(in_ms)
    return interactions.with_columns(in_ms.alias("timestamp"))


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


def items_from_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    """The items of a source that has no item file: one row per item id (first seen first), the id
    as its title, every other canonical column missing. For any reader whose source has none."""
    item_ids = interactions.select("item_id").unique(maintain_order=True)
    return item_ids.select(
        *(
            pl.col("item_id").alias(name) if name in ("item_id", "title") else missing_value(dtype).alias(name)
            for name, dtype in schemas.ITEMS.items()
        )
    )


def missing_value(dtype: pl.DataType) -> pl.Expr:
    """A canonical column's value where the source has none: null, or an empty list of text (the
    categories, which later steps read as a list)."""
    if dtype == pl.List(pl.String):
        return pl.lit([], dtype=dtype)
    return pl.lit(None, dtype=dtype)


def text_times(column: pl.Expr) -> pl.Expr:
    """Text in one of TEXT_TIME_FORMATS(_WITH_ZONE) as a Datetime in ms (UTC); null otherwise."""
    naive = [column.str.to_datetime(f, strict=False, time_unit="ms") for f in TEXT_TIME_FORMATS]
    zoned = [column.str.to_datetime(f, strict=False, time_unit="ms") for f in TEXT_TIME_FORMATS_WITH_ZONE]
    # Through epoch milliseconds: columns with and without a time zone cannot be coalesced.
    epoch_ms = pl.coalesce(*(parsed.dt.epoch("ms") for parsed in naive + zoned))
    return epoch_ms.cast(pl.Datetime("ms"))


def _converted(column: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """The one conversion rule of every reader: text is stripped first, and an integer may be
    written as a whole float ("1995.0", as pandas writes an integer column that holds nulls)."""
    if source == pl.String:
        column = column.str.strip_chars()
        if isinstance(target, pl.Datetime):
            return text_times(column)
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
                reason = "missing value" if missing[row] else f"value does not convert to {_expected(dtype)}"
                problems.setdefault(row, (name, reason))
    for row in sorted(problems):
        field_name, reason = problems[row]
        raw = ", ".join(f"{k}={v!r}" for k, v in frame.row(row, named=True).items())
        bad_rows.add(int(lines[row]), field_name, reason, raw)
    good = ~pl.Series(range(frame.height)).is_in(list(problems))
    for name in casts:
        nulled = unconverted[name] & good
        if name not in required and nulled.any():
            bad_rows.null(name, nulled.sum(), str(frame[name].filter(nulled)[0]))
    return cast.filter(good)


def _expected(dtype: pl.DataType) -> str:
    return TEXT_TIME_EXPECTED if isinstance(dtype, pl.Datetime) else str(dtype)


def read_raw(cfg: DataConfig) -> RawData:
    """Read the recipe's data source; paths in the recipe are relative to the repository root.

    Fails when more than `cfg.max_quarantine_share` of a file's rows were quarantined, or of its
    kept rows had a field's value read as null because it did not convert: a file that is mostly
    bad, or a column that is mostly unreadable, is a wrong format or mapping, not a few bad lines.
    """
    path = resolve_repo_path(cfg.path)
    items_path = resolve_repo_path(cfg.items_path) if cfg.items_path else None
    # Imported by name here: the reader modules import RawData and BadRows from this package.
    reader = importlib.import_module(data_source(cfg.source).reader)
    raw = reader.read(cfg, path, items_path)
    _check_quarantine_share(raw, cfg.max_quarantine_share)
    _check_nulled_share(raw, cfg.max_quarantine_share)
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


def _check_nulled_share(raw: RawData, max_share: float) -> None:
    """Raise DataError for the first field whose values mostly did not convert: a column the data
    provides is data the user gave, so losing most of it is a failure, not a count in metadata."""
    for account in raw.accounts:
        for name, nulled in account.nulled.items():
            if nulled / max(account.kept, 1) <= max_share:
                continue
            example = account.null_examples.get(name, "")
            raise DataError(
                account.file,
                f"{nulled:,} of {account.kept:,} values did not convert and were read as null "
                f"({nulled / max(account.kept, 1):.1%}, above data.max_quarantine_share {max_share:.1%}), "
                f"e.g. {example!r}: {_conversion_hint(name, example)}",
                field=name,
            )


def _conversion_hint(name: str, example: str) -> str:
    if DECIMAL_COMMA.fullmatch(example.strip()):
        return "it looks like a decimal comma; a tabular source reads one with data.decimal_comma: true"
    return f"fix the values, or (tabular source) map {name!r} to another column with data.column_map"
