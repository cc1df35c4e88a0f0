"""A decode-step attention for grouped-query models on CPU, registered with transformers.

SmolLM2 (like most small chat models) shares each key/value head between several query heads.
transformers' "sdpa" attention copies the whole KV cache to one head per query head (`repeat_kv`)
whenever a padding mask is given, which a batch of prompts always has, and then runs the CPU flash
kernel on a single query row. Profiled at batch 32 with 330-token prompts (SmolLM2-135M, bf16,
2 cores), those two took 80% of a 300 ms decode step, the matmuls of the model itself 15%.

`grouped_decode_attention` does the single-query step as two batched matmuls over the cache as it
is (each key/value head against its group of query heads: no copy), and hands every multi-token
call (prefill, training forwards) to transformers' own sdpa function unchanged. Same arithmetic,
so greedy outputs match sdpa's; tests/test_generation_attention.py checks that.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

GROUPED_DECODE_ATTENTION = "lpt_grouped_decode"


def grouped_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Attention with transformers' signature: query [B, H, Q, D], key/value [B, KVH, L, D];
    returns [B, Q, H, D]. Only Q == 1 with H > KVH takes the grouped path."""
    batch, heads, query_len, head_dim = query.shape
    kv_heads = key.shape[1]
    if query_len != 1 or heads == kv_heads or (dropout and module.training):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    # Query head h uses key/value head h // group (repeat_kv's layout), so the grouped view of the
    # query heads lines up with the cache without moving it.
    grouped_query = query.view(batch, kv_heads, heads // kv_heads, head_dim)
    scores = torch.matmul(grouped_query, key.transpose(-1, -2))
    scores = scores * (scaling if scaling is not None else head_dim**-0.5)
    if attention_mask is not None:
        # [B, 1, 1, L]: a bool mask says where to attend; a float mask is added to the scores.
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(weights, value).reshape(batch, 1, heads, head_dim), None


def register() -> str:
    """Make the attention loadable by name (`attn_implementation=`); returns the name. The mask is
    built as for sdpa. Registering twice is harmless."""
    AttentionInterface.register(GROUPED_DECODE_ATTENTION, grouped_decode_attention)
    AttentionMaskInterface.register(GROUPED_DECODE_ATTENTION, sdpa_mask)
    return GROUPED_DECODE_ATTENTION
