"""A toy RL algorithm, written as docs/extending.md says a new one is: one module with its settings
model and its runner, ending with ALGORITHM. tests/test_extending.py copies it into a scratch
checkout as lpt_core/training/algorithms/toy.py; tests/training/test_rl.py registers it in place.

Its update: k samples of each prompt from the shared rollout engine, then one AdamW step raising
the log-likelihood of each prompt's best sample (rejection-sampling policy gradient).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lpt_core.training.algorithms.base import AlgorithmSettings, RLAlgorithm, RLPhase


class ToySettings(AlgorithmSettings):
    description: ClassVar[str] = "Toy: imitate the best of k samples of each prompt"
    min_samples_per_prompt: ClassVar[int] = 3

    name: Literal["toy"] = "toy"
    step_scale: float = Field(1.0, gt=0)


def run(phase: RLPhase) -> list[dict]:
    import contextlib

    import torch

    from lpt_core.generation.base import stop_token_ids
    from lpt_core.training.examples import rewards_of
    from lpt_core.training.logprobs import sequence_logprobs
    from lpt_core.training.rollout import make_rollout_engine, prompt_batches

    policy, tokenizer, reward, cfg, seed = phase.policy, phase.tokenizer, phase.reward, phase.cfg, phase.seed
    stop_ids = stop_token_ids(tokenizer, policy.generation_config.eos_token_id)
    engine = make_rollout_engine(policy, tokenizer, cfg, stop_ids, contextlib.nullcontext)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate * cfg.algorithm.step_scale)
    batches = prompt_batches(phase.examples, cfg.prompts_per_update, seed)
    history = []
    for step in range(1, cfg.updates_per_round + 1):
        batch = next(batches)
        rollout = engine.rollout([example.prompt for example in batch], seed + step)
        k = rollout.samples_per_prompt
        rows = [example for example in batch for _ in range(k)]
        rewards = torch.tensor(rewards_of(reward, [p.text for p in rollout.profiles], rows)).reshape(-1, k)
        best = rewards.argmax(dim=1) + torch.arange(len(batch)) * k
        policy.train()
        loss = -sequence_logprobs(policy, rollout.input_ids[best], rollout.attention_mask[best],
                                  rollout.completion_mask[best]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        policy.eval()
        metrics = {"reward_mean": float(rewards.mean()), "loss": float(loss.detach()), "rows": float(len(rollout.profiles))}
        history.append(metrics)
        if phase.on_update is not None:
            phase.on_update(step, metrics)
    return history


ALGORITHM = RLAlgorithm(ToySettings, run)
