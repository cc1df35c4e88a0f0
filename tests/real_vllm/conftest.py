"""vLLM for real, on whatever device the installed vLLM build targets (its CPU build in `make test`,
which runs these tests in .venv-vllm; skipped where vLLM is not installed, e.g. the main venv)."""

import os
from collections.abc import Iterator

import pytest

# vLLM reads these when an engine starts. One GiB of KV cache is plenty for the tiny models here;
# the default (4 GiB) would take a good share of a CI machine's memory per engine.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@pytest.fixture(autouse=True, scope="module")
def no_colocated_engine_outlives_its_module() -> Iterator[None]:
    """The process's colocated engine is built for one model, and each module builds its own tiny
    models: shut it down after the module (so it is not left for the interpreter's exit either)."""
    yield
    from lpt_core.generation.vllm_engine import close_colocated_engine

    close_colocated_engine()
