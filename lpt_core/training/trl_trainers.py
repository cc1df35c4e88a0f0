"""TRL 1.16's trainers (GRPO, RLOO: lpt_core.training.algorithms) on the profile writer, with
the same reward and LoRA as REBEL.

They exist to compare REBEL (the method's algorithm) with the two common alternatives on equal
terms: the same RankReward, the same LoRA adapter, the same prompts per update and samples per
prompt, the same end-of-turn stop, the same KL reference (the base model) and per-update metrics
under REBEL's names. One update = one rollout of cfg.prompts_per_update prompts x
cfg.samples_per_prompt samples followed by ONE optimizer step (TRL's num_iterations=1; REBEL's
passes_per_batch has no counterpart here).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PrinterCallback, TrainerCallback

from lpt_core.config import RLConfig, SamplingConfig
from lpt_core.generation.base import stop_token_ids
from lpt_core.training.examples import RLExample, reward_columns
from lpt_core.training.reward import on_finished_profiles

if TYPE_CHECKING:
    from peft import PeftModel

    from lpt_core.training.algorithms.base import RLPhase


log = logging.getLogger(__name__)

# TRL's log keys -> REBEL's metric names (lpt_core.training.rebel.RebelTrainer.update).
_METRIC_NAMES = {
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "kl": "kl",
    "loss": "loss",
    "completions/mean_length": "profile_tokens",
}
# The adapter TRL adds as a frozen copy of a PEFT model's own adapter, to serve as its reference.
_TRL_REFERENCE_ADAPTER = "ref"


def run_trl_updates(trainer: tuple[type, type], phase: RLPhase) -> list[dict]:
    """phase.cfg.updates_per_round steps of TRL's trainer (its config class, its trainer class) on
    the phase policy's own LoRA adapter, with the algorithm's settings (cfg.algorithm, lpt_core.
    training.algorithms) as the config's keywords of the same names; per-step metrics.

    TRL's own completion length counts the end-of-turn token, REBEL's profile_tokens does not.
    """
    policy, tokenizer, examples, cfg = phase.policy, phase.tokenizer, phase.examples, phase.cfg
    if len(examples) < cfg.prompts_per_update:
        raise ValueError(
            f"{len(examples)} examples cannot fill one update of rl.prompts_per_update={cfg.prompts_per_update}"
        )
    if cfg.rollout_backend == "vllm":
        from lpt_core.training.rollout import check_rollout_backend

        check_rollout_backend(policy.device)
    config_class, trainer_class = trainer
    algorithm_arguments = cfg.algorithm.model_dump(exclude={"name"})
    args = config_class(**_trainer_arguments(cfg, phase.seed, phase.output_dir, policy, tokenizer), **algorithm_arguments)
    collector = _MetricsCollector(phase.on_update)
    stop_ids = stop_token_ids(tokenizer, policy.generation_config.eos_token_id)
    with _stopping_at_end_of_turn(policy, tokenizer):
        trainer = trainer_class(
            model=policy,
            reward_funcs=[on_finished_profiles(phase.reward, tokenizer, stop_ids)],
            args=args,
            train_dataset=_dataset(examples),
            processing_class=tokenizer,
            callbacks=[collector],
        )
    # The method's KL reference is the base model, as in REBEL; TRL would instead freeze a copy of
    # the adapter as it is now (which is the base model only in the first round).
    if _TRL_REFERENCE_ADAPTER in policy.peft_config:
        policy.delete_adapter(_TRL_REFERENCE_ADAPTER)
    if cfg.rollout_backend == "vllm":
        _sync_as_rebel_does(trainer, policy)
    # With tqdm off, transformers prints every log dict to stdout; the collector logs instead.
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    policy.eval()
    return collector.history


def _trainer_arguments(cfg: RLConfig, seed: int, output_dir: Path, policy: PeftModel, tokenizer: Any) -> dict:
    """GRPOConfig/RLOOConfig keywords that make one optimizer step per rollout batch, sampled by
    the engine cfg.rollout_backend names."""
    sequences = cfg.prompts_per_update * cfg.samples_per_prompt
    # TRL needs the rollout batch to split into whole micro-batches.
    micro_batch = math.gcd(sequences, cfg.micro_batch_size)
    micro_steps = sequences // micro_batch
    on_cuda = policy.device.type == "cuda"
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "max_steps": cfg.updates_per_round,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "constant",
        "per_device_train_batch_size": micro_batch,
        "gradient_accumulation_steps": micro_steps,
        "steps_per_generation": micro_steps,
        "num_iterations": 1,
        "num_generations": cfg.samples_per_prompt,
        **trl_sampling_arguments(cfg.sampling),
        "beta": cfg.beta,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "use_cpu": not on_cuda,
        "bf16": on_cuda and policy.dtype == torch.bfloat16,
        "fp16": False,
        **_rollout_arguments(cfg, stop_token_ids(tokenizer, policy.generation_config.eos_token_id)),
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "log_completions": False,
    }


def trl_sampling_arguments(sampling: SamplingConfig) -> dict:
    """TRL's sampling keywords for rl.sampling (TRL's trainers always sample), the same decoding
    as the transformers and vLLM engines': no top_k."""
    return {
        "max_completion_length": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": 0,
        "repetition_penalty": sampling.repetition_penalty,
    }


def _rollout_arguments(cfg: RLConfig, stop_ids: list[int]) -> dict:
    """TRL's vLLM keywords: off, or TRL's colocate mode (an engine in this process on the training
    device, its weights set to the policy's, LoRA merged, before each rollout; the sync is REBEL's,
    `_sync_as_rebel_does`).

    TRL's vLLM path takes its stop tokens from vLLM's own defaults (the model's eos), not from the
    model's generation_config that `_stopping_at_end_of_turn` extends, so the end-of-turn tokens
    are passed to vLLM's SamplingParams through generation_kwargs. Run for real on vLLM's CPU build
    (tests/real_vllm, GRPO and RLOO, two updates each); its CUDA build has not run here."""
    if cfg.rollout_backend != "vllm":
        return {"use_vllm": False}
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        "generation_kwargs": {"stop_token_ids": stop_ids},
    }


def _sync_as_rebel_does(trainer: Any, policy: PeftModel) -> None:
    """TRL's colocated engine takes the policy's weights as REBEL's engine does
    (lpt_core.generation.vllm_engine.load_policy_weights).

    TRL 1.16 loads them weight by weight through the vLLM model's `load_weights`. On vLLM 0.32's
    CPU build that fails at the first sync, "AttributeError: 'Parameter' object has no attribute
    'weight_loader'": after loading, vLLM repacks each linear weight for its CPU kernel and drops
    the loaders. (TRL 1.16 supports vLLM up to 0.31, the CUDA extra, where both paths load the
    same way.) TRL's sleep mode, which the sync would also wake, is left off here."""
    from lpt_core.generation.vllm_engine import load_policy_weights

    generation = trainer.vllm_generation
    generation.sync_weights = lambda: load_policy_weights(generation.llm, policy)


def _dataset(examples: Sequence[RLExample]):
    """TRL's train dataset: the templated prompt string plus the columns RankReward reads."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [example.prompt for example in examples], **reward_columns(examples)})


@contextmanager
def _stopping_at_end_of_turn(policy: PeftModel, tokenizer: Any) -> Iterator[None]:
    """While TRL builds its trainer, the model's eos list also holds the chat turn's end token.

    TRL takes its stop tokens from model.generation_config.eos_token_id when the trainer is built;
    tokenizers often name another token as eos (see lpt_core.generation.base), and then every
    sample would run to max_completion_length.
    """
    generation_config = policy.generation_config
    saved = generation_config.eos_token_id
    generation_config.eos_token_id = stop_token_ids(tokenizer, saved)
    try:
        yield
    finally:
        generation_config.eos_token_id = saved


class _MetricsCollector(TrainerCallback):
    """Turns each training step's TRL log into a metrics dict under REBEL's names."""

    def __init__(self, on_update: Callable[[int, dict], None] | None) -> None:
        self.on_update = on_update
        self.history: list[dict] = []
        self._last = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._last = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "reward" not in logs:  # the end-of-training summary has no reward
            return
        now = time.perf_counter()
        metrics = {ours: float(logs[theirs]) for theirs, ours in _METRIC_NAMES.items() if theirs in logs}
        if "completions/clipped_ratio" in logs:
            metrics["finished_share"] = 1.0 - float(logs["completions/clipped_ratio"])
        metrics["seconds"] = now - self._last
        self._last = now
        self.history.append(metrics)
        log.info("%s step %d: %s", args.__class__.__name__, state.global_step, metrics)
        if self.on_update is not None:
            self.on_update(state.global_step, metrics)
