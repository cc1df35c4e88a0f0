"""Any interactions/items table in parquet or CSV, mapped onto the canonical columns by name.

`column_map` maps a canonical column name (schemas.INTERACTIONS / schemas.ITEMS) to the file's
column name; unmapped canonical columns are looked up under their own name, and optional ones
that are absent become null. Timestamps are Unix milliseconds (values below
readers.SECONDS_BELOW are taken as seconds and counted), or a datetime/date column. Without an items
file, each item's id is its only text, so the id serves as its title.
"""

from __future__ import annotations

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
    require_files,
    skip_blank_rows,
    timestamps_in_ms,
    unique_items,
)

INTERACTIONS_REQUIRED = {"user_id", "item_id", "timestamp"}
ITEMS_REQUIRED = {"item_id"}
CATEGORY_SEPARATOR = "|"  # a CSV cell holds a list as "Drama|Crime"


def read_tabular(
    interactions_path: Path,
    items_path: Path | None,
    column_map: dict[str, str],
    bad_rows: BadRowPolicy = "error",
) -> RawData:
    """Read interactions (and items) from parquet or CSV files, chosen by the file suffix.

    Missing ids or timestamps, and required values that do not convert to the canonical type, are
    bad rows: DataError naming file, line and field, or quarantined, per `bad_rows`. Blank rows
    and repeated item ids (the first is kept) are skipped and counted in the accounts.
    """
    require_files(*(path for path in (interactions_path, items_path) if path is not None))
    interactions_bad = BadRows(Path(interactions_path), bad_rows)
    interactions, rows = _read_table(
        Path(interactions_path), schemas.INTERACTIONS, INTERACTIONS_REQUIRED, column_map, interactions_bad
    )
    accounts = [interactions_bad.account(rows, interactions.height)]
    quarantines = [interactions_bad.frame()]
    if items_path is None:
        items = _items_from_ids(interactions)
    else:
        items_bad = BadRows(Path(items_path), bad_rows)
        items, rows = _read_table(Path(items_path), schemas.ITEMS, ITEMS_REQUIRED, column_map, items_bad)
        items = unique_items(items, items_bad, "item_id")
        accounts.append(items_bad.account(rows, items.height))
        quarantines.append(items_bad.frame())
    return RawData(
        interactions=interactions, items=items, quarantine=pl.concat(quarantines), accounts=tuple(accounts)
    )


def _items_from_ids(interactions: pl.DataFrame) -> pl.DataFrame:
    item_ids = interactions.select("item_id").unique(maintain_order=True)
    return item_ids.select(
        *(
            pl.col("item_id").alias(name) if name in ("item_id", "title") else _null(dtype).alias(name)
            for name, dtype in schemas.ITEMS.items()
        )
    )


def _null(dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.List(pl.String):
        return pl.lit([], dtype=dtype)
    return pl.lit(None, dtype=dtype)


def _load(path: Path) -> tuple[pl.DataFrame, int]:
    """The file's table, all CSV cells as text, and the file line of its first data row."""
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path), 1
        if path.suffix in (".csv", ".tsv"):
            separator = "\t" if path.suffix == ".tsv" else ","
            return pl.read_csv(path, separator=separator, infer_schema=False), 2
    except pl.exceptions.PolarsError as exc:
        raise DataError(path, f"unreadable {path.suffix[1:]} file: {exc}") from exc
    raise DataError(path, f"unsupported suffix {path.suffix!r}: use .parquet, .csv or .tsv")


def _read_table(
    path: Path,
    schema: pl.Schema,
    required: set[str],
    column_map: dict[str, str],
    bad_rows: BadRows,
) -> tuple[pl.DataFrame, int]:
    """The file's good rows in the canonical schema, and how many data rows the file holds."""
    frame, first_line = _load(path)
    if frame.height == 0:
        raise DataError(path, "no data rows")
    rows = frame.height
    frame, lines = skip_blank_rows(frame, first_line, bad_rows)
    columns = []
    for name, dtype in schema.items():
        source = column_map.get(name, name)
        if source in frame.columns:
            columns.append(_canonical_source(pl.col(source), frame.schema[source], name).alias(name))
        elif name in required:
            raise DataError(path, f"no column {source!r} (map it with data.column_map)", field=name)
        else:
            columns.append(_null(dtype).alias(name))
    typed = cast_or_report(frame.select(columns), dict(schema), required, lines, bad_rows)
    timestamp_source = frame.schema.get(column_map.get("timestamp", "timestamp"))
    if "timestamp" in schema and not _is_temporal(timestamp_source):
        typed = timestamps_in_ms(typed, bad_rows)
    return typed, rows


def _is_temporal(dtype: pl.DataType | None) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


def _canonical_source(column: pl.Expr, dtype: pl.DataType, name: str) -> pl.Expr:
    """Conversions a plain cast does not do: datetimes to epoch ms, CSV category cells to lists."""
    if name == "timestamp" and _is_temporal(dtype):
        return column.cast(pl.Datetime("ms")).dt.epoch("ms")
    if name == "categories":
        if dtype == pl.String:
            column = column.str.split(CATEGORY_SEPARATOR).list.eval(pl.element().str.strip_chars())
        return column.fill_null(_null(pl.List(pl.String)))
    return column


def read(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    """The recipe's data through this reader (lpt_core.sources names it); paths already resolved."""
    return read_tabular(path, items_path, dict(cfg.column_map), bad_rows=cfg.bad_rows)
