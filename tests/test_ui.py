"""A person's view: headless Chromium (Debian's package) loads the Dagster UI and the MLflow UI.

The Dagster UI must list the pipeline's assets, the MLflow UI the registered model with its
aliases. Screenshots go to pytest's temporary folder (ui_screenshots*/ under its basetemp; pytest
keeps the last three runs' folders), never the work folder.
Skipped where no Chromium is installed (`apt-get install chromium`).
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_FLAGS
from mlflow.tracking import MlflowClient

from lpt_core import paths
from lpt_core.serving import free_port

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
BIN = Path(sys.executable).parent
# The window is tall because the Dagster asset list renders only the rows in view: every asset must fit.
PAGE_FLAGS = ["--window-size=1400,2000", "--virtual-time-budget=20000"]


@contextlib.contextmanager
def background_server(command: list[str], env: dict, health_url: str, log_path: Path, timeout_s: float = 120):
    """Run a server until the block ends; yield once `health_url` answers 200."""
    with log_path.open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                assert server.poll() is None, f"{command[0]} exited: {log_path.read_text()[-2000:]}"
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    assert time.monotonic() < deadline, f"{health_url} did not answer in {timeout_s} s"
                    time.sleep(0.5)
            yield
        finally:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()


def chromium(url: str, profile: Path, screenshot: Path) -> str:
    """The rendered page's DOM, and a screenshot of it."""
    common = [CHROMIUM, *CHROMIUM_FLAGS, *PAGE_FLAGS, f"--user-data-dir={profile}"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui_screenshots")


def test_dagster_ui_lists_the_pipeline_assets(tmp_path, screenshots):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(paths.REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "LPT_HOME": str(tmp_path / "lpt")}
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
               "-w", str(paths.REPO_ROOT / "workspace.yaml")]
    with background_server(command, env, f"http://127.0.0.1:{port}/server_info", tmp_path / "dagster.log"):
        dom = chromium(f"http://127.0.0.1:{port}/assets", tmp_path / "chrome", screenshots / "dagster_assets.png")
    for asset in ("raw_interactions", "user_examples", "zero_shot_profiles", "trained_generator",
                  "evaluation_report", "registered_model"):
        assert asset in dom, asset
    assert (screenshots / "dagster_assets.png").stat().st_size > 10_000


def test_mlflow_ui_shows_the_registered_model_with_its_aliases(tmp_path, screenshots):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    client.create_registered_model("langptune")
    for _ in range(2):
        client.create_model_version("langptune", source=str(tmp_path))
    client.set_registered_model_alias("langptune", "champion", "1")
    client.set_registered_model_alias("langptune", "challenger", "2")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    with background_server(command, env, f"http://127.0.0.1:{port}/health", tmp_path / "mlflow.log"):
        dom = chromium(f"http://127.0.0.1:{port}/#/models/langptune", tmp_path / "chrome",
                       screenshots / "mlflow_registered_model.png")
    assert "langptune" in dom and "champion" in dom and "challenger" in dom
    assert (screenshots / "mlflow_registered_model.png").stat().st_size > 10_000
