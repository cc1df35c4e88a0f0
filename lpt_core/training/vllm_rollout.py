"""REBEL rollouts on the vLLM engine colocated with training (`training.rl.rollout_backend: vllm`).

The engine and the weight sync are lpt_core.generation.vllm_engine's; this module samples REBEL's
pairs on it and turns vLLM's outputs into the same Rollout the transformers path builds. It runs
on a CUDA GPU or, with vLLM's CPU build, on the CPU (tests/real_vllm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lpt_core.config import RLConfig
from lpt_core.generation.base import profile_from_tokens
from lpt_core.generation.vllm_engine import colocated_engine, vllm_for_device
from lpt_core.training import distributed
from lpt_core.training.rollout import SAMPLES_PER_PROMPT, Rollout

if TYPE_CHECKING:
    from peft import PeftModel

ROLLOUT_SETTING = "training.rl.rollout_backend"


def check_rollout_backend(device: torch.device) -> Any:
    """The vllm module, after checking that `training.rl.rollout_backend: vllm` can run with the
    policy on `device` (vLLM's build for that device); the errors name the setting."""
    return vllm_for_device(device, ROLLOUT_SETTING)


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


class VLLMRolloutEngine:
    """REBEL's RolloutEngine on the colocated vLLM engine (see the module docstring).

    Each rollout syncs the policy's weights first, then samples SAMPLES_PER_PROMPT profiles per
    prompt (vLLM's `n`) at cfg.temperature, top_p 1, no top_k, stopped at `stop_ids`. Each prompt's
    request has its own seed drawn from the update's seed (vLLM derives its n samples' seeds from
    it), so a rerun of an update samples the same profiles whatever vLLM's batching.
    """

    def __init__(self, policy: PeftModel, tokenizer: Any, cfg: RLConfig, stop_ids: Sequence[int]) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.stop_ids = list(stop_ids)
        self._engine = colocated_engine(
            policy,
            cfg.vllm_gpu_memory_utilization,
            setting=ROLLOUT_SETTING,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )

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
