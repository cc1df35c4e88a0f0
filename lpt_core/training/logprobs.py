"""Sequence log-probabilities of sampled completions, without a full-vocabulary float32 softmax.

The reference code materialises float32 log-softmax over the whole vocabulary for every token
(docs/method.md, "Known faults"): with a 256k vocabulary that is gigabytes per micro-batch. Here the
model returns logits only from the first completion position on (`logits_to_keep`), and each
chunk of positions is upcast to float32 for its logsumexp on its own; under grad the chunk is
recomputed in the backward pass (checkpoint) instead of its float32 copy being kept.

`adapter_names` (one per row) lets one no-grad pass of a PEFT model score some rows with its LoRA
adapter and others with the adapter off ("__base__"): REBEL's pi_old and pi_ref in one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Logits upcast to float32 at once: batch x positions x vocab <= 2**24 elements (64 MiB).
CHUNK_ELEMENTS = 2**24


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    adapter_names: list[str] | None = None,
) -> Tensor:
    """[batch] sum of log pi(token | prefix) over the tokens where `completion_mask` is 1.

    Rows may be left padded (prompt) and right padded (after the completion): positions follow the
    attention mask, as they did during generation. Carries grad when called under grad.
    `adapter_names`: per row, the PEFT adapter to use, "__base__" for none (PEFT allows this in
    eval mode only).
    """
    if not input_ids.shape == attention_mask.shape == completion_mask.shape:
        raise ValueError(
            f"shapes differ: input_ids {tuple(input_ids.shape)}, attention_mask "
            f"{tuple(attention_mask.shape)}, completion_mask {tuple(completion_mask.shape)}"
        )
    completion_mask = completion_mask.bool()
    if completion_mask[:, 0].any():
        raise ValueError("completion_mask marks position 0: a completion needs a prompt before it")
    if not completion_mask.any():
        return torch.zeros(input_ids.shape[0], device=input_ids.device)
    first = int(completion_mask.any(dim=0).nonzero()[0])
    width = input_ids.shape[1]
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    per_row_adapters = {} if adapter_names is None else {"adapter_names": adapter_names}
    # Logits at positions first-1 .. width-2 predict the tokens at first .. width-1.
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=width - first + 1,
        use_cache=False,
        **per_row_adapters,
    ).logits[:, :-1]
    targets = input_ids[:, first:]
    mask = completion_mask[:, first:]
    step = max(1, CHUNK_ELEMENTS // (logits.shape[0] * logits.shape[2]))
    total = torch.zeros(input_ids.shape[0], device=input_ids.device, dtype=torch.float32)
    for start in range(0, logits.shape[1], step):
        chunk = (logits[:, start : start + step], targets[:, start : start + step])
        if torch.is_grad_enabled() and logits.requires_grad:
            token_logprobs = checkpoint(_token_logprobs, *chunk, use_reentrant=False)
        else:
            token_logprobs = _token_logprobs(*chunk)
        total = total + (token_logprobs * mask[:, start : start + step]).sum(dim=1)
    return total


def _token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[target] as gather - logsumexp, in float32, for one chunk of positions."""
    logits = logits.float()
    chosen = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)
