"""Amazon Reviews 2023 (McAuley lab): review and metadata JSON-lines files, plain or gzipped.

The dumps are large (Movies_and_TV reviews: 17M lines), so both files are streamed: lines are read
in chunks, each chunk becomes a small polars frame holding only the fields used, and only those
projected frames are concatenated. A chunk is first parsed by polars in one call (fast); if
polars rejects it, the chunk is parsed again line by line, which is what finds and names the bad
line (file, 1-based line, field). The JSON rules are polars': a number where an id is expected
reads as its text. Numbers are read as text too and converted by `cast_or_report`, the tabular
reader's rule, so "5.0" and 5.0 read alike; it also names the line of a missing required field.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

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
    timestamps_in_ms,
    unique_items,
)


class _BadValue(ValueError):
    """A JSON value of the wrong type for its field; the message says what was expected."""


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _as_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadValue(f"expected a string id, got {_type_name(value)} {value!r:.40}")
    if isinstance(value, str) and not value.strip():
        raise _BadValue("empty id")
    return str(value)


def _as_text(value: object) -> str:
    if not isinstance(value, str):
        raise _BadValue(f"expected a string, got {_type_name(value)}")
    return value


def _json_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue(f"expected a number, got {_type_name(value)} {value!r:.40}")
    return float(value)


def _as_number_text(value: object) -> str:
    """A number or a numeric string, as text: cast_or_report converts it (as polars reads it)."""
    if isinstance(value, str):
        return value
    _json_number(value)
    return str(value)


def _as_text_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        raise _BadValue(f"expected a list of strings, got {_type_name(value)}")
    return value


def _as_price(value: object) -> str:
    """Prices come as 12.99, "$12.99", "from 5.00" or "None"; numbers are written as polars does."""
    if isinstance(value, str):
        return value
    number = _json_number(value)
    return str(int(number)) if number.is_integer() else repr(number)


@dataclass(frozen=True)
class _Field:
    dtype: pl.DataType  # canonical; numbers are read as text first (see _read_schema)
    convert: Callable[[object], object]  # the careful path's check of the JSON value
    required: bool = False


REVIEW_FIELDS = {
    "user_id": _Field(pl.String, _as_id, required=True),
    "parent_asin": _Field(pl.String, _as_id, required=True),
    "rating": _Field(pl.Float64, _as_number_text, required=True),
    "timestamp": _Field(pl.Int64, _as_number_text, required=True),
    "title": _Field(pl.String, _as_text),
    "text": _Field(pl.String, _as_text),
}
METADATA_FIELDS = {
    "parent_asin": _Field(pl.String, _as_id, required=True),
    "title": _Field(pl.String, _as_text),
    "description": _Field(pl.List(pl.String), _as_text_list),
    "categories": _Field(pl.List(pl.String), _as_text_list),
    "price": _Field(pl.String, _as_price),
    "average_rating": _Field(pl.Float64, _as_number_text),
}


def read_amazon_2023(
    reviews_path: Path,
    metadata_path: Path,
    bad_rows: BadRowPolicy = "error",
    chunk_lines: int = 200_000,
    *,
    prepend_review_title: bool = True,
) -> RawData:
    """Read an Amazon Reviews 2023 category: reviews -> interactions, metadata -> items.

    Reviews give user_id, parent_asin (the item), timestamp (ms; seconds, microseconds and
    nanoseconds are told by magnitude, readers.TIMESTAMP_UNITS, and counted), rating and the
    review text, with the review's own title on a first line when `prepend_review_title`.
    Metadata gives title,
    description (lines joined), categories, price (as text) and average rating; items without a
    title are kept here and dropped by cleaning. Both files must exist before either is read.
    Bad lines raise DataError or go to the quarantine table, per `bad_rows`; an optional field
    that does not convert is read as null; blank lines and a repeated parent_asin (the first line
    is kept) are skipped; all of these are counted in the accounts. An empty file always raises.
    """
    if chunk_lines < 1:
        raise ValueError(f"chunk_lines must be >= 1, got {chunk_lines}")
    reviews_path, metadata_path = Path(reviews_path), Path(metadata_path)
    require_files(reviews_path, metadata_path)
    reviews_bad = BadRows(reviews_path, bad_rows)
    metadata_bad = BadRows(metadata_path, bad_rows)
    reviews, review_lines = _read_json_lines(
        reviews_path,
        REVIEW_FIELDS,
        lambda chunk: _interactions(chunk, prepend_review_title),
        reviews_bad,
        chunk_lines,
    )
    reviews = timestamps_in_ms(reviews, reviews_bad)
    items, item_lines = _read_json_lines(metadata_path, METADATA_FIELDS, _items, metadata_bad, chunk_lines)
    items = unique_items(items, metadata_bad, "parent_asin")
    return RawData(
        interactions=reviews,
        items=items,
        quarantine=pl.concat([reviews_bad.frame(), metadata_bad.frame()]),
        accounts=(
            reviews_bad.account(review_lines, reviews.height),
            metadata_bad.account(item_lines, items.height),
        ),
    )


def _interactions(chunk: pl.DataFrame, prepend_review_title: bool) -> pl.DataFrame:
    title = pl.col("title").str.strip_chars()
    review = pl.col("text")
    if prepend_review_title:
        review = (
            pl.when(title.is_null() | (title == ""))
            .then(review)
            .when(review.is_null())
            .then(title)
            .otherwise(pl.concat_str([title, review], separator="\n"))
        )
    return schemas.conform(
        chunk.select(
            "user_id",
            pl.col("parent_asin").alias("item_id"),
            "rating",
            "timestamp",
            review.alias("review"),
        ),
        schemas.INTERACTIONS,
    )


def _blank_to_null(text: pl.Expr, *placeholders: str) -> pl.Expr:
    stripped = text.str.strip_chars()
    return pl.when(stripped.is_in(["", *placeholders])).then(None).otherwise(stripped)


def _items(chunk: pl.DataFrame) -> pl.DataFrame:
    return schemas.conform(
        chunk.select(
            pl.col("parent_asin").alias("item_id"),
            _blank_to_null(pl.col("title")).alias("title"),
            pl.lit(None, dtype=pl.Int32).alias("year"),
            _blank_to_null(pl.col("description").list.join(" ")).alias("description"),
            pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            _blank_to_null(pl.col("price"), "None").alias("price"),
            "average_rating",
        ),
        schemas.ITEMS,
    )


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _numbered_chunks(stream: IO[bytes], chunk_lines: int) -> Iterator[tuple[list[tuple[int, bytes]], int]]:
    """Chunks of (1-based line number, line) with blank lines left out, and the lines read.

    A UTF-8 byte order mark opening the file is dropped (as CSV readers do): editors on Windows
    write one, and JSON forbids it, so it would cost the first line.
    """
    first_line = 1
    while block := list(islice(stream, chunk_lines)):
        if first_line == 1:
            block[0] = block[0].removeprefix(codecs.BOM_UTF8)
        yield [(first_line + i, line.strip()) for i, line in enumerate(block) if line.strip()], len(block)
        first_line += len(block)


def _read_schema(fields: dict[str, _Field]) -> pl.Schema:
    return pl.Schema({name: pl.String if f.dtype.is_numeric() else f.dtype for name, f in fields.items()})


def _read_json_lines(
    path: Path,
    fields: dict[str, _Field],
    project: Callable[[pl.DataFrame], pl.DataFrame],
    bad_rows: BadRows,
    chunk_lines: int,
) -> tuple[pl.DataFrame, int]:
    """The file's good rows, projected, and the number of lines it holds."""
    schema = _read_schema(fields)
    casts = {name: field.dtype for name, field in fields.items()}
    required = {name for name, field in fields.items() if field.required}
    projected = []
    lines_read = lines_with_data = 0
    try:
        with _open(path) as stream:
            for chunk, block_lines in _numbered_chunks(stream, chunk_lines):
                bad_rows.skip("blank line", block_lines - len(chunk))
                lines_read += block_lines
                lines_with_data += len(chunk)
                if chunk:
                    frame, lines = _parse_chunk(chunk, schema, fields, bad_rows)
                    projected.append(project(cast_or_report(frame, casts, required, lines, bad_rows)))
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(path, f"not a readable gzip file: {exc}") from exc
    if lines_with_data == 0:
        raise DataError(path, "empty file")
    return pl.concat(projected), lines_read


def _parse_chunk(
    chunk: list[tuple[int, bytes]], schema: pl.Schema, fields: dict[str, _Field], bad_rows: BadRows
) -> tuple[pl.DataFrame, pl.Series]:
    """The chunk's lines as a frame of `schema`, and the line number of each of its rows."""
    try:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(line for _, line in chunk)), schema=schema)
    except (pl.exceptions.PolarsError, ValueError):
        return _parse_lines(chunk, schema, fields, bad_rows)
    if frame.height != len(chunk):
        return _parse_lines(chunk, schema, fields, bad_rows)
    return frame, pl.Series("line", [number for number, _ in chunk])


def _parse_lines(
    chunk: list[tuple[int, bytes]], schema: pl.Schema, fields: dict[str, _Field], bad_rows: BadRows
) -> tuple[pl.DataFrame, pl.Series]:
    """The careful path: one line at a time, each bad line reported with its number and field."""
    rows, numbers = [], []
    for number, line in chunk:
        row = _parse_line(number, line, fields, bad_rows)
        if row is not None:
            rows.append(row)
            numbers.append(number)
    return pl.DataFrame(rows, schema=schema, orient="row"), pl.Series("line", numbers, dtype=pl.Int64)


def _parse_line(
    number: int, line: bytes, fields: dict[str, _Field], bad_rows: BadRows
) -> tuple | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8: byte {line[exc.start]:#04x} at offset {exc.start}"
        bad_rows.add(number, None, reason, line.decode("utf-8", errors="replace"))
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Unterminated string starting at").
        bad_rows.add(number, None, f"malformed JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}", text)
        return None
    if not isinstance(record, dict):
        bad_rows.add(number, None, f"expected a JSON object, got {_type_name(record)}", text)
        return None
    values = []
    for name, field in fields.items():
        value = record.get(name)
        try:
            if value is None and field.required:
                raise _BadValue("missing")
            values.append(None if value is None else field.convert(value))
        except _BadValue as exc:
            if field.required:
                bad_rows.add(number, name, str(exc), text)
                return None
            bad_rows.null(name, 1, json.dumps(value))
            values.append(None)
    return tuple(values)


def read(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
    """The recipe's data through this reader (lpt_core.sources names it); paths already resolved."""
    # DataConfig requires items_path for this source (lpt_core.sources: needs_items_path).
    return read_amazon_2023(path, items_path, bad_rows=cfg.bad_rows)  # type: ignore[arg-type]
