"""Serving the trained system: the MLflow pyfunc model (pyfunc_model), the registry flow
(registry), profile steering (steering), and a local `mlflow models serve` process for tests,
benchmarks and demos (this module).
"""

from __future__ import annotations

import contextlib
import json
import os
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
    URL once /ping answers; the server is stopped on exit, whatever happened.

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
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(base_url, server, log, start_timeout_s)
            yield base_url
        finally:
            _stop(server)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


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
