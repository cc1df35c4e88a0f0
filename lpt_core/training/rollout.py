"""What every RL algorithm shares before its update: batches of prompts, and rollouts of
`samples_per_prompt` sampled profiles per prompt as the token tensors a loss reads.

`prompt_batches` draws the update's prompts. The engine `training.rl.rollout_backend` names
samples them (`make_rollout_engine`): `GenerateRolloutEngine`, transformers' `generate` on the
policy itself (any device), or `VLLMRolloutEngine`, a vLLM engine colocated with training and
synced from the policy before each rollout (a CUDA GPU, or the CPU with vLLM's CPU build:
tests/real_vllm). Both return the same `Rollout`. TRL's trainers sample on their own.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from lpt_core.config import RLConfig
from lpt_core.generation.base import GeneratedProfile, profile_from_tokens
from lpt_core.generation.hf_backend import hf_generation_config
from lpt_core.generation.vllm_engine import colocated_engine, vllm_for_device, vllm_sampling_arguments
from lpt_core.training import distributed

if TYPE_CHECKING:
    from peft import PeftModel

    from lpt_core.training.examples import RLExample

ROLLOUT_SETTING = "training.rl.rollout_backend"


def prompt_batches(examples: Sequence[RLExample], size: int, seed: int) -> Iterator[list[RLExample]]:
    """Endless batches of `size` examples: a seeded shuffle, reshuffled at each pass over the data,
    so every example is used once per pass (a batch may straddle two passes)."""
    rng = random.Random(seed)
    pending: list[RLExample] = []
    while True:
        while len(pending) < size:
            epoch = list(examples)
            rng.shuffle(epoch)
            pending.extend(epoch)
        yield pending[:size]
        pending = pending[size:]



@dataclass
class Rollout:
    """`samples_per_prompt` sampled profiles per prompt, rows k*i .. k*i+k-1 for prompt i, as
    full token sequences.

    `completion_mask` marks the profile's tokens and the end-of-turn token that closed it (ending
    the turn is the policy's choice too, so it is trained on it); padding and the prompt are 0.
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    profiles: list[GeneratedProfile]
    samples_per_prompt: int


class RolloutEngine(Protocol):
    """What samples the rollouts (make_rollout_engine). Everything after the rollout is the same
    for every engine."""

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """cfg.samples_per_prompt samples of each prompt from the policy as it is now, drawn with `seed`."""
        ...


class GenerateRolloutEngine:
    """Rollouts with transformers' `generate` on the policy itself (any device)."""

    def __init__(
        self,
        policy: PeftModel,
        tokenizer: Any,
        cfg: RLConfig,
        stop_ids: Sequence[int],
        autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.samples_per_prompt = cfg.samples_per_prompt
        self.stop_ids = list(stop_ids)
        self._autocast = autocast
        # The seed is set per rollout (torch.manual_seed). On CUDA a static KV cache gives the
        # decode step fixed shapes, so transformers compiles it.
        self._generation_config = hf_generation_config(
            cfg.sampling, self.stop_ids, tokenizer.pad_token_id, static_cache=policy.device.type == "cuda"
        )

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """The samples of each prompt in consecutive rows, stopped at the turn's end."""
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        repeated = [ids for ids in encoded for _ in range(self.samples_per_prompt)]
        batch = self.tokenizer.pad({"input_ids": repeated}, padding=True, return_tensors="pt")
        batch = batch.to(self.policy.device)
        torch.manual_seed(seed)
        self.policy.eval()
        with torch.no_grad(), self._autocast():
            output = self.policy.generate(**batch, generation_config=self._generation_config)
        return rollout_from_generate(batch["attention_mask"], output, self.tokenizer, self.stop_ids,
                                     self.samples_per_prompt)


def rollout_from_generate(
    prompt_attention_mask: Tensor, output: Tensor, tokenizer: Any, stop_ids: Sequence[int], samples_per_prompt: int
) -> Rollout:
    """The Rollout of `generate`'s `output` (left-padded prompts, then the generated tokens, padded
    after each row's stop): each row's completion is kept through its first stop token."""
    generated = output[:, prompt_attention_mask.shape[1] :]
    is_stop = torch.isin(generated, torch.tensor(list(stop_ids), device=generated.device))
    # Keep every token up to and including the first stop token.
    after_stop = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
    generated_mask = (~after_stop).long()
    stop_set = set(stop_ids)
    profiles = [profile_from_tokens(tokenizer, row, stop_set) for row in generated.tolist()]
    return Rollout(
        input_ids=output,
        attention_mask=torch.cat([prompt_attention_mask, generated_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_attention_mask), generated_mask], dim=1),
        profiles=profiles,
        samples_per_prompt=samples_per_prompt,
    )


def make_rollout_engine(
    policy: PeftModel,
    tokenizer: Any,
    cfg: RLConfig,
    stop_ids: Sequence[int],
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> RolloutEngine:
    """The engine that cfg.rollout_backend names."""
    if cfg.rollout_backend == "vllm":
        return VLLMRolloutEngine(policy, tokenizer, cfg, stop_ids)
    return GenerateRolloutEngine(policy, tokenizer, cfg, stop_ids, autocast)


def check_rollout_backend(device: torch.device) -> Any:
    """The vllm module, after checking that `training.rl.rollout_backend: vllm` can run with the
    policy on `device` (vLLM's build for that device); the errors name the setting."""
    return vllm_for_device(device, ROLLOUT_SETTING)


def rollout_from_vllm_outputs(outputs: Sequence[Any], tokenizer: Any, stop_ids: Sequence[int]) -> Rollout:
    """The Rollout that the log-prob passes take, from vLLM's RequestOutputs (each with
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
        samples_per_prompt=len(outputs[0].outputs),
    )


class VLLMRolloutEngine:
    """The RolloutEngine on the colocated vLLM engine (see the module docstring).

    Each rollout syncs the policy's weights first, then samples cfg.samples_per_prompt profiles per
    prompt (vLLM's `n`) as cfg.sampling says, stopped at `stop_ids`. Each prompt's
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
        """The samples of each prompt, in consecutive rows, from the policy as it is now."""
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
            n=self.cfg.samples_per_prompt, seed=seed, **vllm_sampling_arguments(self.cfg.sampling, self.stop_ids)
        )
