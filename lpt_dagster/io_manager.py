"""Stores asset values as files a person can open outside Dagster: polars frames as parquet, the
typed values of lpt_dagster.values as JSON tagged with their type, under the workspace resource's
root, where the assets write their own files. Writes are atomic, so a run killed mid-write never leaves a file that a later run loads as
a finished asset. A table asset with a canonical schema (lpt_core.data.schemas) is checked against
it before it is written, so a step that changes a column's type fails where it did so, not in a
later asset that reads the column."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from lpt_core.atomic import atomic_path, write_text
from lpt_core.data import schemas
from lpt_dagster import values
from lpt_dagster.resources import WorkspaceResource

# The table assets that hold a canonical table: their columns and dtypes, checked on every write.
TABLE_SCHEMAS: dict[str, pl.Schema] = {
    "raw_interactions": schemas.INTERACTIONS,
    "raw_items": schemas.ITEMS,
    "cleaned_histories": schemas.INTERACTIONS,
    "cleaned_items": schemas.ITEMS,
    "user_examples": schemas.EXAMPLES,
    "item_catalog": schemas.ITEMS,
}


class TableSchemaError(TypeError):
    """A table asset written with columns that do not fit its canonical schema."""


def check_table_schema(asset: str, frame: pl.DataFrame) -> None:
    """TableSchemaError naming the asset and each wrong column (expected vs found dtype), for an
    asset listed in TABLE_SCHEMAS; other tables have no canonical schema to check."""
    schema = TABLE_SCHEMAS.get(asset)
    mismatches = schemas.schema_mismatches(frame, schema) if schema is not None else []
    if mismatches:
        raise TableSchemaError(f"asset {asset}: the table does not fit its schema: {'; '.join(mismatches)}")


class LocalFilesIOManager(dg.ConfigurableIOManager):
    workspace: WorkspaceResource

    def _file(self, key: dg.AssetKey, suffix: str) -> Path:
        return self.workspace.outputs.asset_value(key.path, suffix)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if isinstance(obj, pl.DataFrame):
            check_table_schema(context.asset_key.to_user_string(), obj)
            path = self._file(context.asset_key, ".parquet")
            with atomic_path(path) as tmp:
                obj.write_parquet(tmp)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
        elif values.is_value(obj):
            write_text(self._file(context.asset_key, ".json"), values.to_json(obj))
        else:
            raise TypeError(
                f"asset {context.asset_key.to_user_string()}: LocalFilesIOManager stores polars "
                f"DataFrames and the typed values of lpt_dagster.values, got {type(obj).__name__}"
            )

    def load_input(self, context: dg.InputContext) -> object:
        asset = context.asset_key.to_user_string()
        table, value = self._file(context.asset_key, ".parquet"), self._file(context.asset_key, ".json")
        if table.is_file():
            return pl.read_parquet(table)
        if value.is_file():
            try:
                return values.from_json(value.read_text(encoding="utf-8"))
            except values.StaleValueError as exc:
                raise values.StaleValueError(
                    f"asset {asset}: {value} was stored by an older version of langptune and cannot be "
                    f"read ({exc}): rematerialise {asset}"
                ) from exc
        raise FileNotFoundError(
            f"asset {asset} has no stored value ({table.name} or {value.name} under {table.parent}): "
            "materialise it (and its upstream assets) first"
        )
