"""A fresh interpreter in which some packages cannot be imported, as on a machine that lacks them
(the GPU machine of `make gpu-check`: torch, transformers, peft and accelerate, no polars, faiss,
dagster, mlflow or vllm; TRL travels with the call)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ABSENT_ON_THE_GPU_MACHINE = ("polars", "faiss", "dagster", "mlflow", "vllm")

# Run first in the interpreter: a None entry in sys.modules makes `import name` (and of its
# submodules) raise ModuleNotFoundError and importlib.util.find_spec(name) return None, as for a
# package that is not installed (libraries probe optional packages with find_spec).
_BLOCKER = """
import sys
sys.modules.update(dict.fromkeys({blocked!r}))
"""


def run_without(
    blocked: Sequence[str], code: str, cwd: Path | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`code` run by `python -c` in a fresh interpreter where `blocked` cannot be imported."""
    program = _BLOCKER.format(blocked=tuple(blocked)) + code
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )
