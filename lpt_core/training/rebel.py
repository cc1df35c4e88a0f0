"""REBEL on the profile writer: the method's RL phase (docs/method.md, "Training").

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
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lpt_core.config import RLConfig
from lpt_core.generation.base import check_batch_tokenizer, stop_token_ids
from lpt_core.training import distributed
from lpt_core.training.examples import rewards_of
from lpt_core.training.logprobs import sequence_logprobs
from lpt_core.training.rollout import Rollout, make_rollout_engine

if TYPE_CHECKING:  # type hints only: the reward pulls in faiss, which rollouts never need
    from peft import PeftModel

    from lpt_core.training.algorithms.rebel import RebelSettings, RewardWhitening
    from lpt_core.training.examples import RLExample
    from lpt_core.training.reward import RankReward

# The regression compares the two samples of one prompt (RebelSettings takes exactly 2; it cannot
# be read from there: the settings module imports this one in its runner).
SAMPLES_PER_PROMPT = 2
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


def shape_and_whiten(
    rewards: Tensor, logp_old: Tensor, logp_ref: Tensor, beta: float, whiten: RewardWhitening = "batch"
) -> Tensor:
    """R - beta * (log pi_old - log pi_ref), then standardised (training.rl.algorithm.reward_whitening):

    - "batch" (the reference): (x - mean) / (std + 1e-8) over the batch, the population std (as
      the reference's whiten), so the result has std exactly 1;
    - "within_prompt": each sample's deviation from its prompt's mean (rows 2i and 2i+1 are one
      prompt's), over the population std of all deviations, so the deviations have std 1. REBEL
      regresses only the gap between a prompt's two samples, and with batch whitening those gaps
      shrink by the ratio of within- to between-prompt spread (about 1/8 for the rank reward: users
      differ far more than two profiles of one user), so the regression targets all sit near 0.

    Launched in several processes, the batch is all processes' rows: each passes its own and gets
    its own back, standardised with the statistics of all of them.
    """
    shaped = rewards - beta * (logp_old - logp_ref)
    if whiten == "batch":
        return distributed.whiten_across_processes(shaped)
    pairs = shaped.reshape(-1, SAMPLES_PER_PROMPT)
    deviations = (pairs - pairs.mean(dim=1, keepdim=True)).reshape(-1)
    spread = distributed.gather(deviations).pow(2).mean().sqrt()  # the deviations' mean is 0
    return deviations / (spread + 1e-8)


@dataclass(frozen=True)
class RegressionStats:
    """What one update's regression did to its own objective (logged per update).

    loss_before/after: the batch's REBEL loss at the sampling policy and after the kept steps;
    pairs_toward_better: share of pairs with unequal rewards whose log-ratio gap points to the
    better sample afterwards; grad_norm: of the first step's gradient; backtracks: steps undone;
    step_scale: the final step size over the configured learning rate; logp_path_gap: mean
    |log pi_old| difference between the pi_old/pi_ref pass and the regression's own pass, 0 in
    exact arithmetic (its size is the numeric noise between two batchings, e.g. bf16 rounding,
    which the regression avoids by taking pi_old from its own pass)."""

    loss_before: float
    loss_after: float
    pairs_toward_better: float
    grad_norm: float
    backtracks: int
    steps_kept: int
    step_scale: float
    logp_path_gap: float

    def metrics(self) -> dict[str, float]:
        return {
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "pairs_toward_better": self.pairs_toward_better,
            "grad_norm": self.grad_norm,
            "backtracks": float(self.backtracks),
            "steps_kept": float(self.steps_kept),
            "step_scale": self.step_scale,
            "logp_path_gap": self.logp_path_gap,
        }


@dataclass
class _Snapshot:
    params: list[Tensor]
    grads: list[Tensor | None]
    optimizer: dict


class _BatchRegression:
    """REBEL's loss on one fixed rollout batch, its gradient accumulated over micro-batches, and
    the optimizer step with an undo: the pieces of RebelTrainer._regress's line search."""

    def __init__(self, trainer: RebelTrainer, rollout: Rollout, logp_old: Tensor, rewards: Tensor) -> None:
        self.trainer, self.rollout, self.rewards = trainer, rollout, rewards
        # Replaced by the first pass's own log-probs (see _loss), chunk by chunk.
        self.logp_old = logp_old.clone()
        self.anchored = False
        self.optimizer = trainer.optimizer
        self.params = [p for p in trainer.policy.parameters() if p.requires_grad]
        pairs = len(rollout.profiles) // SAMPLES_PER_PROMPT
        per_step = max(1, trainer.cfg.micro_batch_size // SAMPLES_PER_PROMPT)
        self.chunks = [torch.arange(start, min(start + per_step, pairs)) for start in range(0, pairs, per_step)]
        self.pairs = pairs

    def loss_and_grad(self) -> tuple[float, Tensor]:
        """The whole batch's loss (mean over all processes' pairs) and per-pair log-ratio gaps at
        the current weights, with the loss's gradient left in .grad."""
        self.optimizer.zero_grad(set_to_none=True)
        return self._loss(with_grad=True)

    def loss_only(self) -> tuple[float, Tensor]:
        with torch.no_grad():
            return self._loss(with_grad=False)

    def grad_norm(self) -> float:
        grads = [p.grad.detach().float().norm() for p in self.params if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(grads))) if grads else 0.0

    def apply(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()

    def snapshot(self) -> _Snapshot:
        return _Snapshot(
            params=[p.detach().clone() for p in self.params],
            grads=[None if p.grad is None else p.grad.detach().clone() for p in self.params],
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
        )

    def restore(self, saved: _Snapshot) -> None:
        """Back to the snapshot's weights, gradient and optimizer moments (a copy of them: one
        snapshot may be restored several times)."""
        with torch.no_grad():
            for param, value, grad in zip(self.params, saved.params, saved.grads, strict=True):
                param.copy_(value)
                param.grad = None if grad is None else grad.clone()
        self.optimizer.load_state_dict(copy.deepcopy(saved.optimizer))

    def _loss(self, with_grad: bool) -> tuple[float, Tensor]:
        trainer, total, gaps = self.trainer, 0.0, []
        model = trainer._training.model if with_grad else trainer.policy
        for pair_ids in self.chunks:
            first, second = 2 * pair_ids, 2 * pair_ids + 1
            logp_new = trainer._rows_logprobs(model, self.rollout, torch.cat([first, second])).cpu()
            count = len(pair_ids)
            if not self.anchored:
                # pi_old of the regression = the sampling policy scored by THIS pass, in these
                # micro-batches: the pi_old/pi_ref pass batches rows differently (and mixes
                # adapters), and in bf16 that alone moved sequence log-probs by about 1 nat once
                # the adapter was non-zero, noise as large as the reward gaps being regressed on.
                self.logp_old[first], self.logp_old[second] = logp_new[:count].detach(), logp_new[count:].detach()
            ratio = logp_new - torch.cat([self.logp_old[first], self.logp_old[second]])
            gaps.append((ratio[:count] - ratio[count:]).detach())
            loss = rebel_loss(
                logp_new[:count], self.logp_old[first], logp_new[count:], self.logp_old[second],
                self.rewards[first], self.rewards[second], trainer.settings.eta,
            ) * (count / self.pairs)
            if with_grad:
                trainer._training.backward(loss)
            total += float(loss.detach())
        self.anchored = True
        return distributed.mean_across(total), torch.cat(gaps)


class RebelTrainer:
    """REBEL updates of a LoRA policy, written directly on PEFT/transformers.

    Why not a TRL GRPOTrainer subclass: REBEL's unit is a PAIR of samples of one prompt whose
    squared log-ratio gap is regressed on the reward gap; pi_old log-probs must be frozen at
    rollout and reused over several passes (4 in the reference), each an optimizer step on the
    whole batch's gradient, kept only if it lowers the batch's loss; rewards are shaped with a
    sequence-level KL to the base model and whitened over the batch before pairing. GRPO's hooks assume per-token clipped surrogate losses on group
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
        if cfg.algorithm.name != "rebel":
            raise ValueError(f"RebelTrainer needs rl.algorithm rebel, got {cfg.algorithm.name!r}")
        self.cfg = cfg
        self.settings: RebelSettings = cfg.algorithm
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
        """One REBEL update on `batch`: rollout, rewards, then settings.passes_per_batch passes.

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
            rewards_of(self.reward, [profile.text for profile in rollout.profiles], rows), dtype=torch.float32
        )
        rewards = shape_and_whiten(raw_rewards, logp_old, logp_ref, self.cfg.beta, self.settings.reward_whitening)
        regression = self._regress(rollout, logp_old, rewards)
        self.updates_done += 1
        all_rewards = distributed.gather(raw_rewards)
        log_ratios = distributed.gather(logp_old - logp_ref)
        profiles = distributed.gather(
            torch.tensor([[p.num_tokens, p.finished] for p in rollout.profiles], dtype=torch.float64)
        )
        return {
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std(correction=0)),
            "kl": float(log_ratios.mean()),
            # beta * kl_std is the KL shaping's spread beside reward_std: where it is the larger, the
            # whitened regression targets mostly say "stay near the base", not "rank the item higher".
            "kl_std": float(log_ratios.std(correction=0)),
            "loss": regression.loss_after,
            **regression.metrics(),
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

    def _regress(self, rollout: Rollout, logp_old: Tensor, rewards: Tensor) -> RegressionStats:
        """settings.passes_per_batch AdamW steps on the whole batch's REBEL loss, each one kept only if
        it lowers that loss (else undone and retried at half the step size, settings.max_backtracks
        times in all per update). Every update starts again at the configured learning rate.

        Why whole-batch steps with a check: REBEL is a least-squares regression on a FIXED batch,
        so its loss before and after a step is measurable exactly. Adam moves every parameter by
        about the learning rate whatever the gradient's size, so a per-pair step over thousands
        of LoRA weights can push one pair's log-ratio gap far past its target and the batch's loss
        up (measured: 3.5 -> 11.6 at lr 2e-4 on SmolLM2 in float32). Each step's loss is computed
        anyway by the next step's forward pass, so the check costs nothing while steps are kept.

        Why no step size carried between updates: in bf16 ANY change of the weights, however small,
        moves a sequence's log-prob by about 0.1-0.2 nat (rounding flips that propagate; measured
        on SmolLM2 with a LoRA perturbed by 1e-9), so the loss of a tiny step is noise around the
        loss before it and is kept or undone at random. A carried scale, halved on every undo and
        doubled only after a clean update, then ratchets down to nothing: 3e-8 of the learning rate
        after 16 updates (bench/results/overfit_bfloat16_updates.md, session 15). A floor of 1/16
        on the carried scale was not enough either: in bf16 small steps do not merely fail at
        random, they fail (the noise adds its square to the loss), while full-rate steps cut it
        several-fold (docs/rl_step.md, 4). Restarting at the configured rate keeps every update's
        first try large enough to be measured; a too-large rate costs float32 some undone steps.
        """
        step = _BatchRegression(self, rollout, logp_old, rewards)
        self.policy.train()
        before, gaps = step.loss_and_grad()
        grad_norm = step.grad_norm()
        path_gap = (step.logp_old - logp_old).abs().mean().reshape(1)
        current = before
        backtracks, steps_kept = 0, 0
        scale = 1.0
        for pass_index in range(self.settings.passes_per_batch):
            last = pass_index == self.settings.passes_per_batch - 1
            saved = step.snapshot() if self.settings.max_backtracks else None
            kept = False
            while not kept:
                step.apply(self.cfg.learning_rate * scale)
                # The next step needs this point's gradient; the last one needs only its loss.
                loss, new_gaps = step.loss_only() if last else step.loss_and_grad()
                kept = saved is None or loss <= current
                if kept:
                    break
                step.restore(saved)
                if backtracks == self.settings.max_backtracks:
                    break  # every smaller step failed too: stay at the last kept point
                backtracks += 1
                scale /= 2
            if not kept:
                break
            current, gaps = loss, new_gaps
            steps_kept += 1
        self.policy.eval()
        reward_gap = rewards[0::2] - rewards[1::2]
        decided = reward_gap != 0
        toward = ((gaps * torch.sign(reward_gap))[decided] > 0).float().mean() if decided.any() else torch.tensor(0.0)
        return RegressionStats(
            loss_before=before,
            loss_after=current,
            pairs_toward_better=float(distributed.gather(toward.reshape(1)).mean()),
            grad_norm=grad_norm,
            backtracks=backtracks,
            steps_kept=steps_kept,
            step_scale=scale,
            logp_path_gap=float(distributed.gather(path_gap).mean()),
        )

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
