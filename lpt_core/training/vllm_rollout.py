"""REBEL rollouts on a vLLM engine colocated with training (`training.rl.rollout_backend: vllm`).

One vLLM engine per process lives on the training GPU next to the policy, for the life of the
process (vLLM does not reliably give its GPU memory back when an engine is dropped, so the engine is
built once and reused by every RL phase and by the decoder phase's profile writing, see
lpt_core.generation.vllm_backend.VLLMGenerator.for_policy). It takes
`training.rl.vllm_gpu_memory_utilization` of the GPU's memory; training keeps the rest.

How the policy reaches vLLM: before every rollout, the policy's weights with its LoRA folded in are
written into the engine's model one tensor at a time (`load_weights`), as TRL 1.16's colocate mode
does (trl.generation.vllm_generation.VLLMGeneration.sync_weights). Unlike TRL, the merge is computed
out of place (W + scale * B @ A into a fresh tensor per layer): merging in place and unmerging after
does not restore bf16 weights exactly, and the policy would drift a little at every update. The
alternative, saving the adapter and passing a new LoRARequest per update (vLLM's `enable_lora`),
was not taken: vLLM caps `max_lora_rank` (512 at most, the paper uses 1024) and generation with an
un-merged adapter is slower, which is the point of using vLLM.

The engine runs in this process (`distributed_executor_backend="external_launcher"`, as TRL's
colocate mode), which is what makes its model reachable for `load_weights`.

UNTESTED here: vLLM is CUDA-only and not installed on the development machine. What the tests cover
is the merged weights (`merged_policy_weights`), the conversion of vLLM's outputs into a Rollout
(`rollout_from_vllm_outputs`) and the run-time checks (`check_rollout_backend`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lpt_core.config import RLConfig
from lpt_core.generation.base import profile_from_tokens
from lpt_core.generation.vllm_backend import import_vllm, require_cuda
from lpt_core.training import distributed
from lpt_core.training.rebel import SAMPLES_PER_PROMPT, Rollout

if TYPE_CHECKING:
    from peft import PeftModel

ROLLOUT_SETTING = "training.rl.rollout_backend"
# TRL's value for colocated engines: vLLM's memory profiler, given its default (much larger), thinks
# there is not enough memory left beside the trainer.
MAX_BATCHED_TOKENS = 4096


def check_rollout_backend(device: torch.device, setting: str = ROLLOUT_SETTING) -> Any:
    """The vllm module, after checking that the recipe `setting` ("vllm") can run with the policy
    on `device`: a CUDA GPU and the `vllm` extra; the errors name the setting."""
    if device.type != "cuda":
        raise ValueError(
            f"{setting} 'vllm' needs the policy on a CUDA GPU, it is on {device.type}: "
            f"set models.device to cuda or {setting} to 'transformers'"
        )
    require_cuda(setting)
    return import_vllm(setting)


# As a decorator, no_grad holds inside each step of the generator only, not in the caller's code
# between steps (a `with` block around the yields would leave grad off in the caller).
@torch.no_grad()
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


def rollout_from_vllm_outputs(outputs: Sequence[Any], tokenizer: Any, stop_ids: Sequence[int]) -> Rollout:
    """The Rollout that REBEL's log-prob passes take, from vLLM's RequestOutputs (each with
    `.prompt_token_ids` and `.outputs[i].token_ids`; rows follow requests, then samples).

    The tensors are those the transformers path builds from the same tokens: prompts left-padded
    by the tokenizer, then each sample (vLLM ends it with the stop token that stopped it, kept in
    `token_ids`) right-padded with the pad token to the longest sample; masks mark the samples'
    tokens.
    """
    stop_set = set(stop_ids)
    prompts, samples = [], []
    for request in outputs:
        for sample in request.outputs:
            prompts.append(list(request.prompt_token_ids))
            samples.append(list(sample.token_ids))
    batch = tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
    width = max(len(sample) for sample in samples)
    generated = torch.full((len(samples), width), tokenizer.pad_token_id, dtype=torch.long)
    generated_mask = torch.zeros_like(generated)
    for row, sample in enumerate(samples):
        generated[row, : len(sample)] = torch.tensor(sample, dtype=torch.long)
        generated_mask[row, : len(sample)] = 1
    profiles = [profile_from_tokens(tokenizer, row, stop_set) for row in generated.tolist()]
    return Rollout(
        input_ids=torch.cat([batch["input_ids"], generated], dim=1),
        attention_mask=torch.cat([batch["attention_mask"], generated_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(batch["attention_mask"]), generated_mask], dim=1),
        profiles=profiles,
    )


@dataclass
class ColocatedEngine:
    """The process's vLLM engine and the model folder and dtype it was built for."""

    vllm: Any
    llm: Any
    folder: Path
    dtype: torch.dtype
    gpu_memory_utilization: float

    def sync(self, policy: PeftModel) -> None:
        """Write the policy's current weights (LoRA merged) into the engine, then drop vLLM's
        prefix cache, whose keys and values were computed with the old weights."""
        model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, weight in merged_policy_weights(policy):
            model.load_weights([(name, weight)])
        self.llm.reset_prefix_cache()


_ENGINE: ColocatedEngine | None = None


def colocated_engine(
    policy: PeftModel, gpu_memory_utilization: float, setting: str = ROLLOUT_SETTING
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
    vllm = check_rollout_backend(policy.device, setting)
    _set_launcher_environment()
    llm = vllm.LLM(
        model=str(folder),
        tokenizer=str(folder),
        dtype=str(dtype).removeprefix("torch."),
        gpu_memory_utilization=gpu_memory_utilization,
        # In this process, not a separate engine process: its model must be reachable for sync().
        distributed_executor_backend="external_launcher",
        # Without this vLLM merges the model's generation_config.json (top_k, penalties...) into
        # every request; our SamplingParams describe the decoding completely.
        generation_config="vllm",
        max_num_batched_tokens=MAX_BATCHED_TOKENS,
        seed=distributed.rank(),
        trust_remote_code=False,
    )
    _ENGINE = ColocatedEngine(vllm, llm, folder, dtype, gpu_memory_utilization)
    return _ENGINE


def _set_launcher_environment() -> None:
    """vLLM's external launcher reads the process's place in the group from the environment, which
    torchrun and accelerate set and a single process lacks (TRL sets the same)."""
    os.environ.setdefault("RANK", str(distributed.rank()))
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", str(distributed.world_size()))
    from trl.trainer.utils import ensure_master_addr_port

    ensure_master_addr_port()


class VLLMRolloutEngine:
    """REBEL's RolloutEngine on the colocated vLLM engine (see the module docstring).

    Each rollout syncs the policy's weights first, then samples SAMPLES_PER_PROMPT profiles per
    prompt (vLLM's `n`) at cfg.temperature, top_p 1, no top_k, stopped at `stop_ids`. Each prompt's
    request has its own seed drawn from the update's seed (vLLM derives its n samples' seeds from
    it), so a rerun of an update samples the same profiles whatever vLLM's batching.
    UNTESTED here: vLLM is not installed on the development machine.
    """

    def __init__(self, policy: PeftModel, tokenizer: Any, cfg: RLConfig, stop_ids: Sequence[int]) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.stop_ids = list(stop_ids)
        self._engine = colocated_engine(policy, cfg.vllm_gpu_memory_utilization)

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """Two samples per prompt from the policy as it is now, rows 2i and 2i+1 for prompt i."""
        self._engine.sync(self.policy)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        seeds = torch.randint(2**31 - 1, (len(encoded),), generator=torch.Generator().manual_seed(seed))
        sampling = [self._sampling_params(int(request_seed)) for request_seed in seeds]
        outputs = self._engine.llm.generate(
            [{"prompt_token_ids": ids} for ids in encoded], sampling_params=sampling, use_tqdm=False
        )
        return rollout_from_vllm_outputs(outputs, self.tokenizer, self.stop_ids)

    def _sampling_params(self, seed: int) -> Any:
        return self._engine.vllm.SamplingParams(
            n=SAMPLES_PER_PROMPT,
            temperature=self.cfg.temperature,
            top_p=1.0,
            max_tokens=self.cfg.max_new_tokens,
            stop_token_ids=self.stop_ids,
            seed=seed,
        )
