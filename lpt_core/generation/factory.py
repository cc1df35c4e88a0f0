"""The generator a recipe names: `generation.backend` -> a loaded ProfileGenerator, from a model name
or over a LoRA policy already loaded.

Apart from base.py so that the backends, which import base, are never imported back by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.base import ProfileGenerator

if TYPE_CHECKING:
    from peft import PeftModel

BACKENDS = ("transformers", "vllm")


def check_backend(models_cfg: ModelsConfig, gen_cfg: GenerationConfig) -> None:
    """The error make_generator would give for a backend that cannot run here (an unknown name, vLLM
    without a CUDA GPU or without the extra), raised before any model is loaded."""
    if gen_cfg.backend not in BACKENDS:
        raise ValueError(f"generation.backend {gen_cfg.backend!r}: expected 'transformers' or 'vllm'")
    if gen_cfg.backend == "vllm":
        from lpt_core.generation.vllm_backend import require_vllm

        require_vllm(models_cfg)


def make_generator(
    model_name: str, models_cfg: ModelsConfig, gen_cfg: GenerationConfig
) -> ProfileGenerator:
    """Build the generator that `gen_cfg.backend` names, loading `model_name` (see models.py)."""
    check_backend(models_cfg, gen_cfg)
    if gen_cfg.backend == "vllm":
        from lpt_core.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(model_name, models_cfg, gen_cfg)
    from lpt_core.generation.hf_backend import TransformersGenerator

    return TransformersGenerator.load(model_name, models_cfg, gen_cfg)


@contextmanager
def opened_generator(model_name: str, models_cfg: ModelsConfig, gen_cfg: GenerationConfig) -> Iterator[ProfileGenerator]:
    """make_generator's generator for a `with` block, its engine shut down on leaving it: a vLLM
    engine holds its share of GPU memory until then, so two would not fit one after the other."""
    generator = make_generator(model_name, models_cfg, gen_cfg)
    try:
        yield generator
    finally:
        generator.close()


def generator_for_policy(
    policy: PeftModel,
    tokenizer: Any,
    models_cfg: ModelsConfig,
    gen_cfg: GenerationConfig,
    *,
    model_id: str,
    gpu_memory_utilization: float,
) -> ProfileGenerator:
    """The generator `gen_cfg.backend` names over a LoRA `policy` already loaded, for a caller done
    with the policy: transformers writes with it merged in place (an un-merged adapter generates at
    about half the speed), vLLM with the process's colocated engine set to its weights
    (`gpu_memory_utilization`: the engine's share of the GPU)."""
    check_backend(models_cfg, gen_cfg)
    if gen_cfg.backend == "vllm":
        from lpt_core.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator.for_policy(
            policy, tokenizer, gen_cfg, model_id=model_id, gpu_memory_utilization=gpu_memory_utilization
        )
    from lpt_core.generation.hf_backend import TransformersGenerator

    return TransformersGenerator(policy.merge_and_unload().eval(), tokenizer, gen_cfg, model_id=model_id)
