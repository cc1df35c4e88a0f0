"""Any interactions/items table in parquet or CSV, mapped onto the canonical columns by name.

`column_map` maps a canonical column name (schemas.INTERACTIONS / schemas.ITEMS) to the file's
column name; unmapped canonical columns are looked up under their own name, and optional ones
that are absent become null. Timestamps are Unix milliseconds (seconds, microseconds and
nanoseconds are told by magnitude, readers.TIMESTAMP_UNITS, and counted), a datetime/date column,
or text dates in ISO 8601 forms (readers.TEXT_TIME_FORMATS: "2016-10-16 17:57:24", "2016-10-16",
"2016-10-16T17:57:24+02:00"). Without an items file, each item's id is its only text, so the id
serves as its title.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lpt_core.config import DataConfig
from lpt_core.data import schemas
from lpt_core.data.errors import DataError
from lpt_core.data.readers import (
    BadRowPolicy,
    BadRows,
    RawData,
    cast_or_report,
    items_from_ids,
    missing_value,
    require_files,
    skip_blank_rows,
    text_times,
    timestamps_in_ms,
    unique_items,
)

INTERACTIONS_REQUIRED = {"user_id", "item_id", "timestamp"}
ITEMS_REQUIRED = {"item_id"}
CATEGORY_SEPARATOR = "|"  # a CSV cell holds a list as "Drama|Crime"
# What a header read as one column may hold instead, when the file's separator is another.
LIKELY_SEPARATORS = (";", "\t", ",", "|")


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written: its separator (None: by suffix) and its decimal mark."""

    separator: str | None = None
    decimal_comma: bool = False


def read_tabular(
    interactions_path: Path,
    items_path: Path | None,
    column_map: dict[str, str],
    bad_rows: BadRowPolicy = "error",
    csv_format: CsvFormat = CsvFormat(),
) -> RawData:
    """Read interactions (and items) from parquet or CSV files, chosen by the file suffix.

    Missing ids or timestamps, and required values that do not convert to the canonical type, are
    bad rows: DataError naming file, line and field, or quarantined, per `bad_rows`. Blank rows
    and repeated item ids (the first is kept) are skipped and counted in the accounts.
    """
    require_files(*(path for path in (interactions_path, items_path) if path is not None))
    interactions_bad = BadRows(Path(interactions_path), bad_rows)
    interactions, rows = _read_table(
        Path(interactions_path), schemas.INTERACTIONS, INTERACTIONS_REQUIRED, column_map, csv_format, interactions_bad
    )
    accounts = [interactions_bad.account(rows, interactions.height)]
    quarantines = [interactions_bad.frame()]
    if items_path is None:
        items = items_from_ids(interactions)
    else:
        items_bad = BadRows(Path(items_path), bad_rows)
        items, rows = _read_table(Path(items_path), schemas.ITEMS, ITEMS_REQUIRED, column_map, csv_format, items_bad)
        items = unique_items(items, items_bad, "item_id")
        accounts.append(items_bad.account(rows, items.height))
        quarantines.append(items_bad.frame())
    return RawData(
        interactions=interactions, items=items, quarantine=pl.concat(quarantines), accounts=tuple(accounts)
    )


def _load(path: Path, separator: str | None) -> tuple[pl.DataFrame, int]:
    """The file's table, all CSV cells as text, and the file line of its first data row."""
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path), 1
        if path.suffix in (".csv", ".tsv"):
            separator = separator or ("\t" if path.suffix == ".tsv" else ",")
            return pl.read_csv(path, separator=separator, infer_schema=False), 2
    except pl.exceptions.PolarsError as exc:
        raise DataError(path, f"unreadable {path.suffix[1:]} file: {exc}") from exc
    raise DataError(path, f"unsupported suffix {path.suffix!r}: use .parquet, .csv or .tsv")


def _read_table(
    path: Path,
    schema: pl.Schema,
    required: set[str],
    column_map: dict[str, str],
    csv_format: CsvFormat,
    bad_rows: BadRows,
) -> tuple[pl.DataFrame, int]:
    """The file's good rows in the canonical schema, and how many data rows the file holds."""
    frame, first_line = _load(path, csv_format.separator)
    if frame.height == 0:
        raise DataError(path, "no data rows")
    rows = frame.height
    frame, lines = skip_blank_rows(frame, first_line, bad_rows)
    columns = []
    casts = dict(schema)
    for name, dtype in schema.items():
        source = column_map.get(name, name)
        if source in frame.columns:
            source_column = _canonical_source(pl.col(source), frame.schema[source], name, dtype, csv_format)
            columns.append(source_column.alias(name))
        elif name in required:
            raise DataError(path, _missing_column(source, frame.columns), field=name)
        else:
            columns.append(missing_value(dtype).alias(name))
    timestamp_source = column_map.get("timestamp", "timestamp")
    dates = "timestamp" in schema and _holds_dates(frame, timestamp_source)
    if dates:  # converted as dates, then to epoch milliseconds
        casts["timestamp"] = pl.Datetime("ms")
    typed = cast_or_report(frame.select(columns), casts, required, lines, bad_rows)
    if dates:
        return typed.with_columns(pl.col("timestamp").dt.epoch("ms")), rows
    if "timestamp" in schema:
        typed = timestamps_in_ms(typed, bad_rows)
    return typed, rows


def _missing_column(name: str, found: list[str]) -> str:
    """The message for a required column that is not in the file: the columns that are, and the
    separator the file seems to use when its header came out as one column holding one."""
    message = f"no column {name!r} (map it with data.column_map); columns found: {', '.join(map(repr, found))}"
    if len(found) == 1:
        held = [separator for separator in LIKELY_SEPARATORS if separator in found[0]]
        if held:
            message += (
                f"; that looks like one column holding {held[0]!r} separators: "
                f"set data.csv_separator to {held[0]!r}"
            )
    return message


def _holds_dates(frame: pl.DataFrame, name: str) -> bool:
    """Whether the column holds dates: a datetime/date column, or text that reads as dates more
    often than as numbers (Unix times)."""
    if name not in frame.columns:
        return False
    dtype = frame.schema[name]
    if dtype != pl.String:
        return _is_temporal(dtype)
    text = pl.col(name).str.strip_chars()
    as_dates, as_numbers = frame.select(
        text_times(text).is_not_null().sum().alias("dates"),
        text.cast(pl.Float64, strict=False).is_not_null().sum().alias("numbers"),
    ).row(0)
    return as_dates > as_numbers


def _is_temporal(dtype: pl.DataType | None) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


def _canonical_source(
    column: pl.Expr, dtype: pl.DataType, name: str, target: pl.DataType, csv_format: CsvFormat
) -> pl.Expr:
    """Conversions a plain cast does not do: CSV category cells to lists, decimal commas."""
    if name == "categories":
        if dtype == pl.String:
            column = column.str.split(CATEGORY_SEPARATOR).list.eval(pl.element().str.strip_chars())
        return column.fill_null(missing_value(pl.List(pl.String)))
    if csv_format.decimal_comma and dtype == pl.String and target.is_float():
        return column.str.replace(",", ".", literal=True)
    return column


def read(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    """The recipe's data through this reader (lpt_core.sources names it); paths already resolved."""
    csv_format = CsvFormat(separator=cfg.csv_separator, decimal_comma=cfg.decimal_comma)
    return read_tabular(path, items_path, dict(cfg.column_map), bad_rows=cfg.bad_rows, csv_format=csv_format)
