"""Where the project keeps what it fetches and produces.

Everything generated lives in one git-ignored work folder (default `.lpt/` at the repository root,
or `$LPT_HOME`), so a clean-up is one `rm -rf` and nothing generated is ever committed. Fetched raw
data goes under `data/raw/` (also git-ignored) because its licences forbid redistribution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def work_dir() -> Path:
    return Path(os.environ.get("LPT_HOME", REPO_ROOT / ".lpt")).resolve()


def raw_data_dir() -> Path:
    return Path(os.environ.get("LPT_RAW_DATA", REPO_ROOT / "data" / "raw")).resolve()


def models_dir() -> Path:
    return work_dir() / "models"


def downloads_dir() -> Path:
    return work_dir() / "downloads"


def outputs_dir() -> Path:
    return work_dir() / "outputs"


@dataclass(frozen=True)
class Outputs:
    """Where each thing the pipeline produces lives under one outputs folder. The Dagster assets
    (through lpt_dagster's workspace resource), its IO manager and `lpt` all follow these rules,
    so `lpt train` resumes the checkpoints a materialisation left and reads the tables it stored."""

    root: Path

    @classmethod
    def default(cls) -> Outputs:
        """The work folder's outputs/ ($LPT_HOME/outputs)."""
        return cls(outputs_dir())

    def asset_value(self, asset_path: tuple[str, ...] | list[str], suffix: str) -> Path:
        """The file the IO manager stores an asset's value in (suffix ".parquet" or ".json")."""
        return self.root.joinpath(*asset_path).with_suffix(suffix)

    def table(self, asset: str) -> Path:
        """A stored table asset (user_examples, item_catalog, ...)."""
        return self.asset_value([asset], ".parquet")

    def folder(self, name: str) -> Path:
        """The folder of an asset's own files: reports, indexes, models."""
        return self.root / name

    def training(self, variant: str) -> Path:
        """A training variant's phase checkpoints."""
        return self.root / "training" / variant

    @property
    def profile_store(self) -> Path:
        """The ProfileStore every generating step shares (zero-shot, trained, training's decoder phase)."""
        return self.root / "profile_store.parquet"


def mlflow_dir() -> Path:
    return work_dir() / "mlflow"


def resolve_repo_path(path: str | Path) -> Path:
    """Recipe paths are relative to the repository root, wherever the process was started."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate
