"""Where the project keeps what it fetches and produces.

Everything generated lives in one git-ignored work folder (default `.lpt/` at the repository root,
or `$LPT_HOME`), so a clean-up is one `rm -rf` and nothing generated is ever committed. Fetched raw
data goes under `data/raw/` (also git-ignored) because its licences forbid redistribution.
"""

from __future__ import annotations

import os
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


def mlflow_dir() -> Path:
    return work_dir() / "mlflow"


def resolve_repo_path(path: str | Path) -> Path:
    """Recipe paths are relative to the repository root, wherever the process was started."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate
