"""Errors for bad input data: each names the file, and where known the line and the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DataError(ValueError):
    """Raised for input that cannot be used; str() reads like a compiler error: file:line: field."""

    path: Path | str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = str(self.path) + (f":{self.line}" if self.line is not None else "")
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}: {what}{self.message}"
