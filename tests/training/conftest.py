"""Fixtures shared by the training tests: a tiny causal LM on disk, single-threaded torch."""

from pathlib import Path

import pytest
import torch
from tiny_lm import build_tiny_lm


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: thread hand-offs cost more than the matrix work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))
