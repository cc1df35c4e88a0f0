"""The deployment variants under deploy/: each dagster.yaml validates against Dagster's instance
schema, the compose file wires its services together, the multiprocess variant really runs steps
in separate processes with the "gpu" pool one step at a time, and MLflow tracking is chosen by the
environment."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from lpt_core import tracking

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
INSTANCE_FOLDERS = sorted(path.parent for path in DEPLOY.glob("*/dagster.yaml"))
POSTGRES_VARIANTS = ["compose", "kubernetes"]

# Classes from packages of the `scale` extra, which the test environment does not install: their
# module and class as the dagster-k8s 0.29 API docs spell them, and the config keys its
# K8sRunLauncher accepts (DagsterK8sJobConfig.config_type_run_launcher).
OPTIONAL_CLASSES = {("dagster_k8s.launcher", "K8sRunLauncher")}
K8S_RUN_LAUNCHER_KEYS = {
    "instance_config_map", "postgres_password_secret", "dagster_home", "load_incluster_config",
    "kubeconfig_file", "k8s_api_ssl_ca_cert_file", "fail_pod_on_run_failure", "run_k8s_config",
    "job_namespace", "only_allow_user_defined_k8s_config_fields", "only_allow_user_defined_env_vars",
    "job_image", "image_pull_policy", "image_pull_secrets", "service_account_name",
    "env_config_maps", "env_secrets", "env_vars", "volume_mounts", "volumes", "labels",
    "resources", "scheduler_name", "security_context",
}  # fmt: skip


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _configurable_classes(config: dict) -> Iterator[tuple[str, dict]]:
    """(section, {module, class, config}) for every pluggable class an instance file names."""
    for section, value in config.items():
        if isinstance(value, dict) and {"module", "class"} <= value.keys():
            yield section, value


def _env_references(node: Any) -> set[str]:
    """Names of the environment variables a Dagster config reads through `{env: NAME}`."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(_env_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_references(value) for value in node))
    return set()


@pytest.mark.parametrize("folder", INSTANCE_FOLDERS, ids=lambda folder: folder.name)
def test_each_instance_file_validates_against_dagsters_schema(folder: Path):
    config, custom_instance_class = dagster_instance_config(str(folder))
    assert custom_instance_class is None
    # Every variant keeps the project's "gpu" pool guard: pools limited per step, not per run.
    assert config["concurrency"]["pools"]["granularity"] == "op"
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_instance_validation_rejects_a_misspelt_key(tmp_path: Path):
    broken = _yaml(DEPLOY / "local-multiprocess" / "dagster.yaml")
    broken["concurrency"]["pools"]["defaultlimit"] = broken["concurrency"]["pools"].pop("default_limit")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    with pytest.raises(DagsterInvalidConfigError, match="defaultlimit"):
        dagster_instance_config(str(tmp_path))


@pytest.mark.parametrize("folder", INSTANCE_FOLDERS, ids=lambda folder: folder.name)
def test_each_named_class_exists_and_accepts_its_config(folder: Path):
    for section, entry in _configurable_classes(_yaml(folder / "dagster.yaml")):
        pointer = (entry["module"], entry["class"])
        if importlib.util.find_spec(entry["module"].split(".")[0]) is None:
            assert pointer in OPTIONAL_CLASSES, f"{folder.name}: {section} names unknown {pointer}"
            unknown = set(entry.get("config", {})) - K8S_RUN_LAUNCHER_KEYS
            assert not unknown, f"{folder.name}: {section} has keys K8sRunLauncher lacks: {unknown}"
            continue
        cls = class_from_code_pointer(*pointer)
        result = validate_config(cls.config_type(), entry.get("config", {}))
        assert result.success, f"{folder.name}: {section}: {result.errors}"


@pytest.mark.parametrize("variant", POSTGRES_VARIANTS)
def test_postgres_variants_read_the_connection_from_the_environment(variant: str):
    postgres_db = _yaml(DEPLOY / variant / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    assert postgres_db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }


# --- docker compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return _yaml(DEPLOY / "docker-compose.yaml")


def _host_and_port(url: str) -> tuple[str, int]:
    match = re.fullmatch(r"[a-z]+://(?:[^@/]+@)?([^:/]+):(\d+)(?:/.*)?", url)
    assert match, f"no host:port in {url!r}"
    return match.group(1), int(match.group(2))


def test_compose_runs_postgres_mlflow_and_both_dagster_processes(compose: dict):
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "dagster-webserver", "dagster-daemon"}
    assert services["dagster-webserver"]["command"][0] == "dagster-webserver"
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("dagster-webserver", "dagster-daemon"):
        # The Postgres instance file replaces the image's sqlite one.
        mounts = {mount.split(":")[1]: mount.split(":")[0] for mount in services[name]["volumes"]}
        assert (DEPLOY / mounts["/app/dagster.yaml"]).resolve() == DEPLOY / "compose" / "dagster.yaml"
        assert mounts["/app/.lpt"] == "lpt-work"  # both see the same work folder and compute logs
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_gives_dagster_every_variable_its_instance_file_reads(compose: dict):
    needed = _env_references(_yaml(DEPLOY / "compose" / "dagster.yaml"))
    postgres_env = compose["services"]["postgres"]["environment"]
    for name in ("dagster-webserver", "dagster-daemon"):
        environment = compose["services"][name]["environment"]
        assert needed <= environment.keys()
        assert environment["DAGSTER_PG_HOST"] == "postgres"
        assert environment["DAGSTER_PG_USERNAME"] == postgres_env["POSTGRES_USER"]
        assert environment["DAGSTER_PG_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]
        assert environment["DAGSTER_PG_DB"] == postgres_env["POSTGRES_DB"]


def test_compose_mlflow_server_uses_its_own_postgres_database(compose: dict):
    mlflow = compose["services"]["mlflow"]
    backend = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql://")
    assert _host_and_port(backend) == ("postgres", 5432)
    database = backend.rsplit("/", 1)[1]
    assert database != compose["services"]["postgres"]["environment"]["POSTGRES_DB"]  # both have "runs"
    init_sql = (DEPLOY / "compose" / "postgres-init.sql").read_text(encoding="utf-8")
    assert f"CREATE DATABASE {database};" in init_sql
    # Artifacts land in a named volume the server mounts, and only the server writes them.
    destination = mlflow["environment"]["MLFLOW_ARTIFACTS_DESTINATION"]
    mount_points = [mount.split(":")[1] for mount in mlflow["volumes"]]
    assert any(destination.startswith(point + "/") for point in mount_points)


def test_compose_points_dagster_at_the_mlflow_server(compose: dict):
    mlflow = compose["services"]["mlflow"]
    command = mlflow["command"]
    port = int(command[command.index("--port") + 1])
    for name in ("dagster-webserver", "dagster-daemon"):
        uri = compose["services"][name]["environment"]["MLFLOW_TRACKING_URI"]
        assert _host_and_port(uri) == ("mlflow", port)
        # MLflow refuses Host headers it does not know; the service name must be one it knows.
        assert f"mlflow:{port}" in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
        assert compose["services"][name]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_compose_builds_the_project_image_with_the_scale_extra(compose: dict):
    for name in ("mlflow", "dagster-webserver", "dagster-daemon"):
        build = compose["services"][name]["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO_ROOT
        assert "scale" in build["args"]["LPT_EXTRAS"].split(",")
    assert re.search(r"^ARG LPT_EXTRAS=", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE), (
        "the Dockerfile must declare ARG LPT_EXTRAS for the compose build"
    )
    # Runs execute in the daemon's container: it alone reserves the GPU.
    devices = compose["services"]["dagster-daemon"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in compose["services"]["dagster-webserver"]


# --- kubernetes -------------------------------------------------------------------------------


def test_helm_values_load_the_same_code_location_and_limits_as_the_instance_file():
    values = _yaml(DEPLOY / "kubernetes" / "values.yaml")
    instance = _yaml(DEPLOY / "kubernetes" / "dagster.yaml")
    workspace_module = _yaml(REPO_ROOT / "workspace.yaml")["load_from"][0]["python_module"]["module_name"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == workspace_module
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    gpu_limit = values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]["limits"]
    assert gpu_limit == instance["run_launcher"]["config"]["resources"]["limits"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert concurrency["pools"]["granularity"] == instance["concurrency"]["pools"]["granularity"]
    mounts = {mount["mountPath"] for mount in deployment["volumeMounts"]}
    assert mounts == {mount["mount_path"] for mount in instance["run_launcher"]["config"]["volume_mounts"]}


# --- the multiprocess variant, run for real ---------------------------------------------------


def _timed_step(seconds: float) -> dg.MaterializeResult:
    """Records which process ran the step, and when (as materialisation metadata)."""
    start = time.time()
    time.sleep(seconds)
    return dg.MaterializeResult(metadata={"pid": os.getpid(), "start": start, "end": time.time()})


@dg.asset(pool="gpu")
def gpu_step_a() -> dg.MaterializeResult:
    return _timed_step(0.5)


@dg.asset(pool="gpu")
def gpu_step_b() -> dg.MaterializeResult:
    return _timed_step(0.5)


@dg.asset(deps=[gpu_step_a, gpu_step_b])
def after_both() -> dg.MaterializeResult:
    return _timed_step(0)


def multiprocess_check_job() -> dg.JobDefinition:
    """Module-level so that each step process can load it again from this file."""
    job = dg.define_asset_job("multiprocess_check", executor_def=dg.multiprocess_executor)
    return dg.Definitions(assets=[gpu_step_a, gpu_step_b, after_both], jobs=[job]).resolve_job_def(
        "multiprocess_check"
    )


def test_multiprocess_variant_runs_steps_in_separate_processes_one_gpu_step_at_a_time(tmp_path: Path):
    shutil.copy(DEPLOY / "local-multiprocess" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        # By file, not by module name: pytest imports this file under a name no step process knows.
        job = ReconstructableJob.for_file(__file__, multiprocess_check_job.__name__)
        result = dg.execute_job(job, instance=instance)
    assert result.success
    first, second, last = (
        {key: value.value for key, value in result.asset_materializations_for_node(name)[0].metadata.items()}
        for name in ("gpu_step_a", "gpu_step_b", "after_both")
    )
    pids = {first["pid"], second["pid"], last["pid"]}
    assert len(pids) == 3 and os.getpid() not in pids
    # The pool allows one "gpu" step at a time: one ended before the other started.
    assert first["end"] <= second["start"] or second["end"] <= first["start"]


# --- MLflow location chosen by the environment ------------------------------------------------


@pytest.fixture
def clean_tracking_env(monkeypatch, tmp_path: Path) -> Path:
    for name in (tracking.TRACKING_URI_ENV, tracking.ARTIFACT_ROOT_ENV, tracking.UI_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LPT_HOME", str(tmp_path / "work"))
    return tmp_path


def test_tracking_uri_comes_from_the_argument_then_the_environment(clean_tracking_env: Path, monkeypatch):
    assert tracking.resolve_tracking_uri() == tracking.default_tracking_uri()
    monkeypatch.setenv(tracking.TRACKING_URI_ENV, "http://mlflow:5000")
    assert tracking.resolve_tracking_uri() == "http://mlflow:5000"
    assert tracking.resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_artifact_root_is_never_the_working_folder_of_one_machine(clean_tracking_env: Path, monkeypatch):
    work_artifacts = (clean_tracking_env / "work" / "mlflow" / "artifacts").as_uri()
    assert tracking.default_artifact_root("http://mlflow:5000") is None  # the server decides
    assert tracking.default_artifact_root("postgresql://u:p@db:5432/mlflow") == work_artifacts
    sqlite_store = clean_tracking_env / "store" / "mlflow.db"
    assert tracking.default_artifact_root(f"sqlite:///{sqlite_store}") == (sqlite_store.parent / "artifacts").as_uri()
    monkeypatch.setenv(tracking.ARTIFACT_ROOT_ENV, "s3://bucket/langptune")
    assert tracking.default_artifact_root("postgresql://u:p@db:5432/mlflow") == "s3://bucket/langptune"
    assert tracking.default_artifact_root("http://mlflow:5000") == "s3://bucket/langptune"


def test_ui_links_follow_the_tracking_server(clean_tracking_env: Path, monkeypatch):
    assert tracking.mlflow_ui_url("sqlite:///x.db") == tracking.DEFAULT_UI_URL
    assert tracking.mlflow_ui_url("https://mlflow.example.com") == "https://mlflow.example.com"
    monkeypatch.setenv(tracking.UI_URL_ENV, "http://localhost:5000")
    assert tracking.mlflow_ui_url("http://mlflow:5000") == "http://localhost:5000"


def test_tracker_creates_its_experiment_under_the_configured_artifact_root(clean_tracking_env: Path, monkeypatch):
    store = clean_tracking_env / "db" / "mlflow.db"
    shared = clean_tracking_env / "shared-artifacts"
    monkeypatch.setenv(tracking.TRACKING_URI_ENV, f"sqlite:///{store}")
    monkeypatch.setenv(tracking.ARTIFACT_ROOT_ENV, str(shared))
    tracker = tracking.Tracker(experiment="deploy")
    assert tracker.tracking_uri == f"sqlite:///{store}"
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == shared.as_uri()
