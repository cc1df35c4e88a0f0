"""Stores asset values as files a person can open outside Dagster: polars frames as parquet, the
typed values of lpt_dagster.values as JSON tagged with their type, under the work folder's
outputs/. Writes are atomic, so a run killed mid-write never leaves a file that a later run loads as
a finished asset."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from lpt_core import paths
from lpt_core.atomic import atomic_path, write_text
from lpt_dagster import values


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
        elif values.is_value(obj):
            write_text(stem.with_suffix(".json"), values.to_json(obj))
        else:
            raise TypeError(
                f"asset {context.asset_key.to_user_string()}: LocalFilesIOManager stores polars "
                f"DataFrames and the typed values of lpt_dagster.values, got {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> object:
        stem = self._stem(context.asset_key)
        asset = context.asset_key.to_user_string()
        if stem.with_suffix(".parquet").is_file():
            return pl.read_parquet(stem.with_suffix(".parquet"))
        if stem.with_suffix(".json").is_file():
            try:
                return values.from_json(stem.with_suffix(".json").read_text(encoding="utf-8"))
            except values.StaleValueError as exc:
                raise values.StaleValueError(
                    f"asset {asset}: {stem.with_suffix('.json')} was stored by an older version of "
                    f"langptune and cannot be read ({exc}): rematerialise {asset}"
                ) from exc
        raise FileNotFoundError(
            f"asset {asset} has no stored value under {stem}.*: materialise it (and its upstream assets) first"
        )
