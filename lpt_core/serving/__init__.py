"""Serving the trained system: the MLflow pyfunc model (pyfunc_model), the registry flow
(registry), profile steering (steering), and a local `mlflow models serve` process for tests,
benchmarks and demos (this module).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# How long a stopping server may take to finish before it is killed. SIGTERM cancels profile
# writing in flight (lpt_core.serving.pyfunc_model), but a test or demo should not wait for
# whatever else uvicorn's shutdown may still wait for.
SHUTDOWN_GRACE_S = 5.0


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_model_server(
    model_uri: str, tracking_uri: str | None = None, port: int | None = None, start_timeout_s: float = 120
) -> Iterator[str]:
    """Run `mlflow models serve -m model_uri --env-manager local` on 127.0.0.1 and yield its base
    URL once /ping answers; the server is stopped on exit, whatever happened, within
    SHUTDOWN_GRACE_S (killed if it has not finished by then).

    `tracking_uri` is where a "models:/..." URI is resolved (MLFLOW_TRACKING_URI of the server).
    """
    port = port or free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # MLflow starts uvicorn by name: this environment's bin folder must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]
    base_url = f"http://127.0.0.1:{port}"
    # The server's log goes to a file, not a pipe: an unread pipe fills up and stalls the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        server = start_process_group(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(base_url, server, log, start_timeout_s)
            yield base_url
        finally:
            stop_process_group(server)


def start_process_group(command: list[str], **popen_args) -> subprocess.Popen:
    """Start `command` (the mlflow CLI, which runs uvicorn as its child) as the leader of a new
    process group that stop_process_group ends as a whole.

    The leader ignores SIGTERM (an ignored signal stays ignored across exec): it then outlives
    uvicorn, which installs its own SIGTERM handler, and reaps it. Were the CLI to die first,
    uvicorn would be left an orphan, still computing a prediction and impossible to wait for."""
    return subprocess.Popen(
        command, process_group=0, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN), **popen_args
    )


def stop_process_group(leader: subprocess.Popen, grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """SIGTERM to the group started by start_process_group; SIGKILL to the whole group if the
    leader has not exited after `grace_s` seconds."""
    _signal_group(leader.pid, signal.SIGTERM)
    try:
        leader.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(leader.pid, signal.SIGKILL)
        leader.wait()


def _signal_group(group: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(group, signal_number)


def post_json(url: str, payload: dict, timeout_s: float = 120) -> tuple[int, dict]:
    """POST `payload` as JSON; (HTTP status, decoded JSON answer), error statuses included."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_until_up(base_url: str, server: subprocess.Popen, log: IO[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the model server exited with {server.returncode}: {log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the model server at {base_url} did not answer /ping within {timeout_s} s")
