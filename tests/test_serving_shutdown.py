"""The served model under a server that shuts down: profile writing in flight stops and answers
503. Its own module: a shutdown seen by one loaded model is seen by every model of the process,
as it is in a server, so no other test's model may be loaded beside it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from test_serving import self_contained_model

from lpt_core.serving.pyfunc_model import MAX_ROWS_PER_REQUEST


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return self_contained_model(tmp_path_factory.mktemp("servable"))


def test_sigterm_cancels_a_prediction_in_flight_and_answers_503(model_dir):
    """Issue 31.12: with a heavy request in flight, the server's shutdown waited for it (35 s)."""
    import mlflow.pyfunc
    import uvicorn
    from mlflow.exceptions import MlflowException

    served = mlflow.pyfunc.load_model(str(model_dir))  # as uvicorn does: before it handles SIGTERM
    generator = served.unwrap_python_model().recommender.generator
    # A heavy request: 32 histories and 400 tokens each, about a minute on a 2-core CPU.
    generator._hf_config.max_new_tokens = generator._hf_config.min_new_tokens = 400
    refused = []

    def predict() -> None:
        try:
            served.predict(pd.DataFrame({"history_item_ids": [["1", "2", "3"]] * MAX_ROWS_PER_REQUEST}))
        except MlflowException as error:
            refused.append(error)

    server = uvicorn.Server(uvicorn.Config(app="unused:app"))
    previous = signal.signal(signal.SIGTERM, server.handle_exit)  # what uvicorn's serve() installs
    try:
        in_flight = threading.Thread(target=predict, daemon=True)
        in_flight.start()
        time.sleep(1.5)
        assert in_flight.is_alive()
        stopped_at = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        in_flight.join(timeout=60)
        waited = time.monotonic() - stopped_at
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert server.should_exit and waited < 5
    (error,) = refused
    assert error.get_http_status_code() == 503 and error.message.startswith("the server is shutting down")
