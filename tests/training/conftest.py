"""Fixtures shared by the training tests: single-threaded torch (the tiny models are in tests/conftest.py)."""


import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: thread hand-offs cost more than the matrix work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

