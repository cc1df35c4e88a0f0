"""Fixtures every test module may use: the tiny random models, built once per test session.

The folders are shared: a test must not write into them (copy one to tmp_path first if it must).
The small tables, RL examples and recipes tests hand the library are built by tests/builders.py;
the tiny Dagster pipeline (dataset, recipe, resources) by tests/tiny_pipeline.py.
"""

from pathlib import Path

import pytest
from tiny_encoder import build_tiny_encoder
from tiny_lm import build_tiny_lm


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory) -> Path:
    """A 2-layer random Llama chat LM and its tokenizer (tests/tiny_lm.py)."""
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def tiny_encoder_folder(tmp_path_factory) -> Path:
    """A tiny random sentence-transformers encoder (tests/tiny_encoder.py)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def tiny_models(tiny_lm_folder, tiny_encoder_folder) -> dict[str, Path]:
    """The tiny models as a recipe's `models` section names them (tests/tiny_pipeline.py)."""
    return {"generator": tiny_lm_folder, "encoder": tiny_encoder_folder}


def pytest_addoption(parser):
    parser.addoption(
        "--broken-update",
        action="store_true",
        help="run tests/training/test_learning.py with every trainer's update broken: each test must then fail",
    )


@pytest.fixture
def broken_update(request) -> bool:
    """True under --broken-update: the learning tests break their trainer's update (sign flipped)."""
    return request.config.getoption("--broken-update")
