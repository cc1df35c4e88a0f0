"""Asset metadata people want to see in the Dagster UI: previews, histograms, plots."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import polars as pl


def frame_preview(frame: pl.DataFrame, rows: int = 10, max_chars: int = 80) -> dg.MetadataValue:
    """The first rows as a markdown table, long cells shortened so the table stays readable."""
    head = frame.head(rows).select(
        _as_text(frame.schema[name], pl.col(name)).str.slice(0, max_chars).alias(name) for name in frame.columns
    )
    return dg.MetadataValue.md(head.to_pandas().to_markdown(index=False))


def _as_text(dtype: pl.DataType, column: pl.Expr) -> pl.Expr:
    if isinstance(dtype, pl.List):
        return column.list.eval(pl.element().cast(pl.String)).list.join(", ")
    return column.cast(pl.String)


def figure_markdown(fig) -> dg.MetadataValue:
    """A matplotlib figure inlined as a PNG; the Dagster UI renders markdown data-URI images."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return _png_data_uri(buffer.getvalue())


def png_markdown(path: Path) -> dg.MetadataValue:
    """A PNG file inlined, as figure_markdown does for a figure."""
    return _png_data_uri(Path(path).read_bytes())


def _png_data_uri(png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})")


def histogram_figure(values: pl.Series, title: str, xlabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values.to_numpy(), bins=min(50, max(5, values.n_unique())))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return fig
