"""The repository is a `dg` project: `dg check defs` (as a person would run it) loads the code
location that pyproject.toml names, under the name workspace.yaml gives it."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DG = Path(sys.executable).parent / "dg"


def test_dg_check_defs_loads_the_definitions(tmp_path):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "LPT_HOME": str(tmp_path / "lpt"),
        "VIRTUAL_ENV": sys.prefix,  # the project's venv, as `make` sets it
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    checked = subprocess.run([str(DG), "check", "defs"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_dg_and_workspace_yaml_name_the_same_code_location():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["dg"]["project"]
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert project["code_location_target_module"] == module
    # The instance keys schedule and sensor states by location name: `dg dev` and the webserver share them.
    assert project["code_location_name"] == module
