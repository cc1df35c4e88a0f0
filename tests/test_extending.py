"""docs/extending.md, followed literally: each extension path it describes, done exactly as it says,
works, and touches the files it names and no others.

A source and an RL algorithm change module-level registries that the config reads, so they are added to a scratch copy of lpt_core and exercised in a fresh
interpreter; the files the copy differs in are the files the path touches. A pipeline step is an
asset and a value type, registered for the test only. (A report row: tests/test_baselines.py,
test_a_new_report_row_is_one_decorated_function_and_its_name.)
"""

# No `from __future__ import annotations`: dagster reads the asset's context annotation as a type.

import filecmp
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from mlflow.tracking import MlflowClient

import lpt_core
from lpt_core import text
from lpt_core.config import Recipe
from lpt_core.data import schemas
from lpt_dagster import definitions, values
from lpt_dagster.io_manager import LocalFilesIOManager
from lpt_dagster.lineage import catalog_table, log_tables
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource

REPO = Path(lpt_core.__file__).resolve().parent.parent


def scratch_copy(root: Path) -> Path:
    """lpt_core, its recipes and tests/test_sources.py under `root`, as a newcomer's checkout."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "lpt_core", root / "lpt_core", ignore=ignore)
    shutil.copytree(REPO / "configs", root / "configs", ignore=ignore)
    (root / "tests").mkdir()
    shutil.copy(REPO / "tests" / "test_sources.py", root / "tests")
    return root


def add_entry(path: Path, closing: str, entry: str) -> None:
    """Insert `entry` before the last `closing` of the file: a new line of a registry's tuple."""
    source = path.read_text(encoding="utf-8")
    at = source.rindex(closing)
    path.write_text(source[:at] + textwrap.indent(textwrap.dedent(entry), " " * 8) + source[at:], encoding="utf-8")


def touched(root: Path) -> list[str]:
    """The files of the scratch copy that are new or differ from the repository's."""
    changed = []
    for path in sorted((root / "lpt_core").rglob("*.py")):
        relative = path.relative_to(root)
        original = REPO / relative
        if not original.is_file() or not filecmp.cmp(path, original, shallow=False):
            changed.append(str(relative))
    return changed


def scratch_env(root: Path) -> dict[str, str]:
    """This environment with the scratch copy's lpt_core first on the path."""
    return {**os.environ, "PYTHONPATH": str(root)}


def run_in(root: Path, code: str) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, capture_output=True, text=True,
                            env=scratch_env(root))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_source_is_a_reader_module_and_an_entry_in_sources(tmp_path):
    root = scratch_copy(tmp_path / "checkout")
    # 1. A reader module: canonical columns, bad rows counted, every row accounted for; the items
    # of a source without an item file come from the shared helper.
    (root / "lpt_core" / "data" / "readers" / "stars_csv.py").write_text(textwrap.dedent('''
        """A CSV of user,item,stars,unix_seconds rows without an item file."""

        from __future__ import annotations

        from pathlib import Path

        import polars as pl

        from lpt_core.config import DataConfig
        from lpt_core.data import schemas
        from lpt_core.data.readers import BadRows, RawData, items_from_ids, require_files


        def read(cfg: DataConfig, path: Path, items_path: Path | None) -> RawData:
            require_files(path)
            bad_rows = BadRows(path, cfg.bad_rows)
            frame = pl.read_csv(path, schema_overrides={"user": pl.String, "item": pl.String})
            interactions = schemas.conform(frame.select(
                pl.col("user").alias("user_id"), pl.col("item").alias("item_id"), pl.col("stars").alias("rating"),
                (pl.col("unix_seconds") * 1000).alias("timestamp"), pl.lit(None, pl.String).alias("review"),
            ), schemas.INTERACTIONS)
            return RawData(interactions=interactions, items=items_from_ids(interactions),
                           quarantine=bad_rows.frame(), accounts=(bad_rows.account(frame.height, interactions.height),))
    '''), encoding="utf-8")
    # 2. One entry in SOURCES.
    add_entry(root / "lpt_core" / "sources.py", "    )\n}\n", '''\
        DataSource(
            name="stars_csv",
            reader="lpt_core.data.readers.stars_csv",
            instruction=f"The user rated (out of 5) the following items, listed from oldest to newest. {_SUMMARY_REQUEST}",
            reader_question="Which item would this user pick next?",
            item_noun="items",
        ),
''')
    (tmp_path / "stars.csv").write_text("user,item,stars,unix_seconds\nu1,i1,4,1000\nu1,i2,5,2000\nu2,i1,3,1500\n")

    run_in(root, f'''
        from lpt_core.config import DataConfig
        from lpt_core.data import schemas
        from lpt_core.data.readers import read_raw
        from lpt_core.sources import data_source

        raw = read_raw(DataConfig(source="stars_csv", path={str(tmp_path / "stars.csv")!r}))
        assert raw.interactions.schema == schemas.INTERACTIONS and raw.items.schema == schemas.ITEMS
        assert raw.items["title"].to_list() == ["i1", "i2"] and raw.accounts[0].kept == 3
        assert data_source("stars_csv").item_noun == "items"
    ''')
    # The guide's checks of every entry (tests/test_sources.py) pass with the fourth source.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider", "tests/test_sources.py"],
        cwd=root, capture_output=True, text=True, env=scratch_env(root),
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "stars_csv" in subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "--noconftest", "-p", "no:cacheprovider",
         "tests/test_sources.py"], cwd=root, capture_output=True, text=True,
        env=scratch_env(root),
    ).stdout
    assert touched(root) == ["lpt_core/data/readers/stars_csv.py", "lpt_core/sources.py"]


def test_an_rl_algorithm_is_its_module_a_registry_line_and_a_variant(tmp_path):
    """"Add an RL algorithm": its module (settings model and runner; tests/toy_algorithm.py),
    one line in RL_ALGORITHM_MODULES, and a variant that trains with it. The config then takes
    its settings and refuses another algorithm's. (tests/training/test_rl.py runs a toy
    algorithm's runner through the RL phase.)"""
    root = scratch_copy(tmp_path / "checkout")
    algorithms = root / "lpt_core" / "training" / "algorithms"
    shutil.copy(REPO / "tests" / "toy_algorithm.py", algorithms / "toy.py")
    source = (algorithms / "__init__.py").read_text(encoding="utf-8")
    at = source.index("}\n", source.index("RL_ALGORITHM_MODULES"))
    (algorithms / "__init__.py").write_text(
        source[:at] + '    "toy": "lpt_core.training.algorithms.toy",\n' + source[at:], encoding="utf-8"
    )
    add_entry(root / "lpt_core" / "training" / "variants.py", "    )\n}\n", '''\
        TrainingVariant("langptune_toy", "langptune", "LangPTune with the toy algorithm in place of REBEL",
                        {"training": {"rl": {"algorithm": "toy", "samples_per_prompt": 3}}}),
''')
    run_in(root, '''
        import pydantic
        from lpt_core.config import RLConfig, load_recipe
        from lpt_core.training.variants import get_variant

        recipe = load_recipe("quick", {"training": {"variants": ["langptune_toy"]},
                                       "registry": {"variant": "langptune_toy"}})
        assert get_variant("langptune_toy").recipe_for(recipe).training.rl.algorithm.name == "toy"
        assert RLConfig(algorithm={"name": "toy", "step_scale": 2.0}, samples_per_prompt=3).algorithm.step_scale == 2.0
        try:
            RLConfig(algorithm={"name": "toy", "eta": 2.0}, samples_per_prompt=3)
        except pydantic.ValidationError as error:
            assert "eta" in str(error)
        else:
            raise AssertionError("a setting the toy algorithm does not read was accepted")
    ''')
    assert touched(root) == [
        "lpt_core/training/algorithms/__init__.py", "lpt_core/training/algorithms/toy.py", "lpt_core/training/variants.py",
    ]

@dataclass(frozen=True)
class CatalogueTextSize:
    """catalogue_text_size: the catalogue's item texts, in characters (a test's own value type)."""

    folder: Path
    items: int
    characters: int


def record_catalogue_text_size(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, recipe: Recipe, item_catalog: pl.DataFrame,
    lengths: pl.Series,
) -> dict:
    """The step's recorder, as lpt_dagster/recording/<domain>.py holds one: its MLflow child run
    with the table it read, and its metadata."""
    with mlflow.asset_run(context, recipe, "catalogue_text_size") as run:
        log_tables(run, [catalog_table(item_catalog)])
        run.log_metrics({"characters": float(lengths.sum())})
    return {"characters": int(lengths.sum()), "mlflow_run": mlflow.link(run)}


@dg.asset(group_name="evaluation")
def catalogue_text_size(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    item_catalog: pl.DataFrame,
) -> CatalogueTextSize:
    """A pipeline step as the guide writes one: one lpt_core call, its recorder, its files under
    the workspace, a typed value."""
    cfg = recipe.get()
    lengths = text.item_texts(item_catalog).str.len_chars()
    folder = workspace.outputs.folder("catalogue_text_size")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lengths.txt").write_text("\n".join(map(str, lengths.to_list())), encoding="utf-8")
    context.add_output_metadata(record_catalogue_text_size(context, mlflow, cfg, item_catalog, lengths))
    return CatalogueTextSize(folder=folder, items=item_catalog.height, characters=int(lengths.sum()))


def test_a_pipeline_step_is_an_asset_and_a_value_type(tmp_path, monkeypatch):
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "lpt"))
    monkeypatch.setitem(values.VALUE_TYPES, "CatalogueTextSize", CatalogueTextSize)
    workspace = WorkspaceResource(root=str(tmp_path / "outputs"))
    io_manager = LocalFilesIOManager(workspace=workspace)
    catalog = pl.DataFrame(
        {"item_id": ["i1", "i2"], "title": ["Alien", "Heat"], "year": [1979, 1995], "description": [None, None],
         "categories": [["Horror"], ["Crime"]], "price": [None, None], "average_rating": [None, None]},
        schema=schemas.ITEMS,
    )
    io_manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("item_catalog")), catalog)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    result = dg.materialize(
        [*definitions.all_assets, catalogue_text_size], selection=["catalogue_text_size"],
        resources={"recipe": RecipeResource(name="quick"), "mlflow": MlflowResource(tracking_uri=tracking_uri),
                   "workspace": workspace, "io_manager": io_manager},
        instance=dg.DagsterInstance.ephemeral(),
    )

    assert result.success
    stored = io_manager.load_input(dg.build_input_context(asset_key=dg.AssetKey("catalogue_text_size")))
    expected = int(text.item_texts(catalog).str.len_chars().sum())
    assert stored == CatalogueTextSize(folder=tmp_path / "outputs" / "catalogue_text_size", items=2, characters=expected)
    assert (stored.folder / "lengths.txt").is_file()
    [run] = MlflowClient(tracking_uri).search_runs(
        [experiment.experiment_id for experiment in MlflowClient(tracking_uri).search_experiments()],
        filter_string="tags.`mlflow.runName` = 'catalogue_text_size'",
    )
    assert run.data.metrics["characters"] == expected
