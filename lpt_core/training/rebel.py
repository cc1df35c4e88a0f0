"""REBEL on the profile writer: the method's RL phase (method.md, "Training").

For each prompt two profiles are sampled; the policy regresses the difference of their log-ratios
(new vs sampling policy) onto the difference of their shaped, whitened rewards:

    L = ( [log pi(p1) - log pi_old(p1)] - [log pi(p2) - log pi_old(p2)] - eta * (r1 - r2) )^2

Launched in several processes (lpt_core.training.distributed), each process rolls out its own
share of the update's prompts; rewards are whitened over the batch gathered from all of them (the
reference whitened each GPU's rows on their own, so a GPU that drew easy users pushed its samples
up relative to another GPU's); gradients are averaged by DDP; metrics are the whole batch's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from lpt_core.config import GenerationConfig, RLConfig
from lpt_core.generation.base import GeneratedProfile, check_batch_tokenizer, profile_from_tokens, stop_token_ids
from lpt_core.generation.hf_backend import hf_generation_config
from lpt_core.training import distributed
from lpt_core.training.logprobs import sequence_logprobs

if TYPE_CHECKING:  # type hints only: the reward pulls in faiss, which rollouts never need
    from peft import PeftModel

    from lpt_core.training.reward import RankReward
    from lpt_core.training.rl import RLExample

SAMPLES_PER_PROMPT = 2  # REBEL's regression compares exactly two samples of the same prompt
# PEFT's name for "no adapter" in a mixed-adapter batch.
BASE_MODEL = "__base__"
# Processes sample with seeds this far apart, so that they never draw the same noise.
RANK_SEED_STRIDE = 1_000_003


def rebel_loss(
    logp_new_1: Tensor,
    logp_old_1: Tensor,
    logp_new_2: Tensor,
    logp_old_2: Tensor,
    reward_1: Tensor,
    reward_2: Tensor,
    eta: float,
) -> Tensor:
    """Mean over pairs of REBEL's squared regression error; rewards already shaped and whitened."""
    log_ratio_gap = (logp_new_1 - logp_old_1) - (logp_new_2 - logp_old_2)
    return ((log_ratio_gap - eta * (reward_1 - reward_2)) ** 2).mean()


def shape_and_whiten(rewards: Tensor, logp_old: Tensor, logp_ref: Tensor, beta: float) -> Tensor:
    """R - beta * (log pi_old - log pi_ref), then (x - mean) / (std + 1e-8) over the batch.

    The std is the population one (as the reference's whiten), so the result has std exactly 1.
    Launched in several processes, the batch is all processes' rows: each passes its own and gets
    its own back, whitened with the mean and std of all of them.
    """
    shaped = rewards - beta * (logp_old - logp_ref)
    return distributed.whiten_across_processes(shaped)


@dataclass
class Rollout:
    """Two sampled profiles per prompt, rows 2i and 2i+1 for prompt i, as full token sequences.

    `completion_mask` marks the profile's tokens and the end-of-turn token that closed it (ending
    the turn is the policy's choice too, so it is trained on it); padding and the prompt are 0.
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    profiles: list[GeneratedProfile]


class RolloutEngine(Protocol):
    """What samples REBEL's rollouts: transformers' generate on the policy (GenerateRolloutEngine)
    or a colocated vLLM engine synced from it (lpt_core.training.vllm_rollout.VLLMRolloutEngine),
    as `training.rl.rollout_backend` says. Everything after the rollout is the same for both."""

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """SAMPLES_PER_PROMPT samples of each prompt from the policy as it is now, drawn with `seed`."""
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
        self.stop_ids = list(stop_ids)
        self._autocast = autocast
        # The seed is set per rollout (torch.manual_seed), not in this config.
        sampling = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature)
        # On CUDA a static KV cache gives the decode step fixed shapes, so transformers compiles it.
        self._generation_config = hf_generation_config(
            sampling, self.stop_ids, tokenizer.pad_token_id, static_cache=policy.device.type == "cuda"
        )

    def rollout(self, prompts: Sequence[str], seed: int) -> Rollout:
        """Two samples per prompt, rows 2i and 2i+1 for prompt i, stopped at the turn's end."""
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        paired = [ids for ids in encoded for _ in range(SAMPLES_PER_PROMPT)]
        batch = self.tokenizer.pad({"input_ids": paired}, padding=True, return_tensors="pt")
        batch = batch.to(self.policy.device)
        torch.manual_seed(seed)
        self.policy.eval()
        with torch.no_grad(), self._autocast():
            output = self.policy.generate(**batch, generation_config=self._generation_config)
        return rollout_from_generate(batch["attention_mask"], output, self.tokenizer, self.stop_ids)


def rollout_from_generate(
    prompt_attention_mask: Tensor, output: Tensor, tokenizer: Any, stop_ids: Sequence[int]
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
        from lpt_core.training.vllm_rollout import VLLMRolloutEngine

        return VLLMRolloutEngine(policy, tokenizer, cfg, stop_ids)
    return GenerateRolloutEngine(policy, tokenizer, cfg, stop_ids, autocast)


class RebelTrainer:
    """REBEL updates of a LoRA policy, written directly on PEFT/transformers.

    Why not a TRL GRPOTrainer subclass: REBEL's unit is a PAIR of samples of one prompt whose
    squared log-ratio gap is regressed on the reward gap; pi_old log-probs must be frozen at
    rollout and reused over several passes (4 in the reference) with an optimizer step per
    micro-batch; rewards are shaped with a sequence-level KL to the base model and whitened over the
    batch before pairing. GRPO's hooks assume per-token clipped surrogate losses on group
    advantages with its own KL term, so REBEL would have to override the rollout bookkeeping, the
    loss and the batching at once, i.e. most of the trainer. The loop here is ~100 lines.

    pi_ref is the base model: the adapter disabled, no second copy. pi_old and pi_ref log-probs
    come from ONE no-grad pass per micro-batch, each row twice: with the adapter and with it off
    (PEFT's per-row `adapter_names`), one sweep over the weights instead of two.
    On CUDA with bf16 weights, rollout and log-prob passes run under bf16 autocast, so the LoRA
    matmuls (PEFT keeps adapter weights in float32) run in bf16 too.
    Sampling is at cfg.temperature; log-probs are the policy's own (temperature 1), so a
    temperature other than 1 samples slightly off-policy (the reference samples at 1).
    Rollouts come from the engine cfg.rollout_backend names (RolloutEngine); with vLLM, pi_old is
    still the policy's own log-prob (this pass), not vLLM's, so kernel differences between the two
    engines do not enter the loss.
    """

    def __init__(
        self, policy: PeftModel, tokenizer: Any, reward: RankReward, cfg: RLConfig, seed: int
    ) -> None:
        check_batch_tokenizer(tokenizer)
        self.policy = policy
        self.tokenizer = tokenizer
        self.reward = reward
        self.cfg = cfg
        self.seed = seed
        self.updates_done = 0
        trainable = [p for p in policy.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the policy has no trainable parameters (expected a LoRA PeftModel)")
        self._training = distributed.prepare_training(policy, torch.optim.AdamW(trainable, lr=cfg.learning_rate))
        self.optimizer = self._training.optimizer
        base_dtype = policy.get_base_model().dtype
        self._bf16_autocast = policy.device.type == "cuda" and base_dtype == torch.bfloat16
        stop_ids = stop_token_ids(tokenizer, policy.generation_config.eos_token_id)
        self._rollout_engine = make_rollout_engine(policy, tokenizer, cfg, stop_ids, self._autocast)

    def update(self, batch: Sequence[RLExample]) -> dict[str, float]:
        """One REBEL update on `batch`: rollout, rewards, then cfg.passes_per_batch passes.

        `batch` is the whole update's prompts, the same in every process; each process rolls out
        its own equal share of it. The metrics are over the whole batch, the same in every process.
        """
        if not batch:
            raise ValueError("update() needs at least one example")
        batch = distributed.own_share(batch, "rl.prompts_per_update")
        started = time.perf_counter()
        rollout = self.rollout([example.prompt for example in batch])
        rollout_seconds = time.perf_counter() - started

        logp_old, logp_ref = self._old_and_ref_logprobs(rollout)
        rows = [example for example in batch for _ in range(SAMPLES_PER_PROMPT)]
        raw_rewards = torch.tensor(
            self.reward(
                [example.prompt for example in rows],
                [profile.text for profile in rollout.profiles],
                target_item_id=[example.target_item_id for example in rows],
                history_item_ids=[list(example.history_item_ids) for example in rows],
            ),
            dtype=torch.float32,
        )
        rewards = shape_and_whiten(raw_rewards, logp_old, logp_ref, self.cfg.beta)
        loss = self._regress(rollout, logp_old, rewards)
        self.updates_done += 1
        all_rewards = distributed.gather(raw_rewards)
        profiles = distributed.gather(
            torch.tensor([[p.num_tokens, p.finished] for p in rollout.profiles], dtype=torch.float64)
        )
        return {
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std(correction=0)),
            "kl": float(distributed.gather(logp_old - logp_ref).mean()),
            "loss": distributed.mean_across(loss),
            "profile_tokens": float(profiles[:, 0].mean()),
            "finished_share": float(profiles[:, 1].mean()),
            "seconds": time.perf_counter() - started,
            "rollout_seconds": rollout_seconds,
        }

    def rollout(self, prompts: Sequence[str]) -> Rollout:
        """Sample two profiles per prompt with the current policy, stopped at the turn's end."""
        # Seeded per update (and process): a rerun of the same round samples the same profiles.
        seed = self.seed + self.updates_done + RANK_SEED_STRIDE * distributed.rank()
        return self._rollout_engine.rollout(prompts, seed)

    def _old_and_ref_logprobs(self, rollout: Rollout) -> tuple[Tensor, Tensor]:
        """log pi_old and log pi_ref of every sample, no grad, on the CPU: per micro-batch one pass
        of each row twice, with the policy's adapter and with none."""
        adapter = self.policy.active_adapter
        self.policy.eval()  # PEFT takes per-row adapters in eval mode only
        old, ref = [], []
        with torch.no_grad():
            for start in range(0, len(rollout.profiles), self.cfg.micro_batch_size):
                rows = torch.arange(start, min(start + self.cfg.micro_batch_size, len(rollout.profiles)))
                names = [adapter] * len(rows) + [BASE_MODEL] * len(rows)
                both = self._rows_logprobs(self.policy, rollout, torch.cat([rows, rows]), names).float().cpu()
                old.append(both[: len(rows)])
                ref.append(both[len(rows) :])
        return torch.cat(old), torch.cat(ref)

    def _regress(self, rollout: Rollout, logp_old: Tensor, rewards: Tensor) -> float:
        """cfg.passes_per_batch shuffled passes over the pairs, an AdamW step per micro-batch."""
        pairs = len(rollout.profiles) // SAMPLES_PER_PROMPT
        pairs_per_step = max(1, self.cfg.micro_batch_size // SAMPLES_PER_PROMPT)
        order_rng = torch.Generator().manual_seed(self.seed + self.updates_done)
        losses = []
        self.policy.train()
        for _ in range(self.cfg.passes_per_batch):
            order = torch.randperm(pairs, generator=order_rng)
            for start in range(0, pairs, pairs_per_step):
                pair_ids = order[start : start + pairs_per_step]
                first, second = 2 * pair_ids, 2 * pair_ids + 1
                logp_new = self._rows_logprobs(self._training.model, rollout, torch.cat([first, second])).cpu()
                count = len(pair_ids)
                loss = rebel_loss(
                    logp_new[:count], logp_old[first], logp_new[count:], logp_old[second],
                    rewards[first], rewards[second], self.cfg.eta,
                )
                self.optimizer.zero_grad(set_to_none=True)
                self._training.backward(loss)
                self.optimizer.step()
                losses.append(float(loss.detach()))
        self.policy.eval()
        return sum(losses) / len(losses)

    def _rows_logprobs(
        self, model: torch.nn.Module, rollout: Rollout, rows: Tensor, adapter_names: list[str] | None = None
    ) -> Tensor:
        """Sequence log-probs of some rows under `model` (the policy, or its DDP wrapper when the
        result needs grad), with the columns that are padding in all of them cut."""
        attention = rollout.attention_mask[rows]
        used = attention.any(dim=0).nonzero().squeeze(1)
        columns = slice(int(used[0]), int(used[-1]) + 1)
        device = self.policy.device
        with self._autocast():
            return sequence_logprobs(
                model,
                rollout.input_ids[rows, columns].to(device),
                attention[:, columns].to(device),
                rollout.completion_mask[rows, columns].to(device),
                adapter_names,
            )

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if self._bf16_autocast else contextlib.nullcontext()
