"""The generator a recipe names: `generation.backend` -> a loaded ProfileGenerator.

Apart from base.py so that the backends, which import base, are never imported back by it.
"""

from __future__ import annotations

from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.base import ProfileGenerator


def make_generator(
    model_name: str, models_cfg: ModelsConfig, gen_cfg: GenerationConfig
) -> ProfileGenerator:
    """Build the generator that `gen_cfg.backend` names, loading `model_name` (see models.py)."""
    if gen_cfg.backend == "transformers":
        from lpt_core.generation.hf_backend import TransformersGenerator

        return TransformersGenerator.load(model_name, models_cfg, gen_cfg)
    if gen_cfg.backend == "vllm":
        from lpt_core.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(model_name, models_cfg, gen_cfg)
    raise ValueError(f"generation.backend {gen_cfg.backend!r}: expected 'transformers' or 'vllm'")
