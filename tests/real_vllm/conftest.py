"""vLLM for real, on whatever device the installed vLLM build targets (its CPU build in `make test`,
which runs these tests in .venv-vllm; skipped where vLLM is not installed, e.g. the main venv)."""

import os

# vLLM reads these when an engine starts. One GiB of KV cache is plenty for the tiny models here;
# the default (4 GiB) would take a good share of a CI machine's memory per engine.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
