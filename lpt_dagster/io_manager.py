"""Stores asset values as files a person can open outside Dagster: polars frames as parquet,
dicts as JSON, under the work folder's outputs/. Writes are atomic, so a run killed mid-write
never leaves a file that a later run loads as a finished asset."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl

from lpt_core import paths
from lpt_core.atomic import atomic_path, write_text


class LocalFilesIOManager(dg.ConfigurableIOManager):
    base_dir: str | None = None  # None: <work folder>/outputs

    def _stem(self, key: dg.AssetKey) -> Path:
        base = Path(self.base_dir) if self.base_dir else paths.outputs_dir()
        return base.joinpath(*key.path)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        stem = self._stem(context.asset_key)
        if isinstance(obj, pl.DataFrame):
            with atomic_path(stem.with_suffix(".parquet")) as tmp:
                obj.write_parquet(tmp)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(stem.with_suffix(".parquet")))})
        elif isinstance(obj, dict):
            write_text(stem.with_suffix(".json"), json.dumps(obj, indent=2, sort_keys=True, default=str))
        else:
            raise TypeError(
                f"asset {context.asset_key.to_user_string()}: LocalFilesIOManager stores polars "
                f"DataFrames and dicts, got {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> object:
        stem = self._stem(context.asset_key)
        if stem.with_suffix(".parquet").is_file():
            return pl.read_parquet(stem.with_suffix(".parquet"))
        if stem.with_suffix(".json").is_file():
            return json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        raise FileNotFoundError(
            f"asset {context.asset_key.to_user_string()} has no stored value under {stem}.*: "
            "materialise it (and its upstream assets) first"
        )
