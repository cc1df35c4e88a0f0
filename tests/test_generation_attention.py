"""The grouped decode-step attention used on CPU computes what transformers' sdpa attention does."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from lpt_core.attention import GROUPED_DECODE_ATTENTION, grouped_decode_attention
from lpt_core.config import GenerationConfig, ModelsConfig
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_generator

PROMPTS = ["a slow-burn thriller fan", "x", "enjoys comedies and animated films, dislikes musicals"]


class _Layer(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def _decode_inputs(dtype: torch.dtype, batch: int = 4, kv_heads: int = 2, length: int = 11):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(batch, kv_heads * 3, 1, 16, generator=generator).to(dtype)
    key = torch.randn(batch, kv_heads, length, 16, generator=generator).to(dtype)
    value = torch.randn(batch, kv_heads, length, 16, generator=generator).to(dtype)
    # Left padding of different widths, as in a batch of prompts of different lengths.
    attend = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    for row in range(batch):
        attend[row, ..., : 2 * row] = False
    return query, key, value, attend


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_a_decode_step_matches_sdpa_on_a_padded_batch(dtype, tolerance, mask_kind):
    query, key, value, attend = _decode_inputs(dtype)
    mask = attend if mask_kind == "bool" else torch.zeros(attend.shape, dtype=dtype).masked_fill(~attend, -1e4)

    grouped, _ = grouped_decode_attention(_Layer(), query, key, value, mask, scaling=0.25)
    reference, _ = sdpa_attention_forward(_Layer(), query, key, value, mask, scaling=0.25)

    assert grouped.shape == reference.shape == (4, 1, 6, 16)
    torch.testing.assert_close(grouped.float(), reference.float(), atol=tolerance, rtol=tolerance)


def test_a_padded_position_gets_no_weight():
    query, key, value, attend = _decode_inputs(torch.float32)
    before, _ = grouped_decode_attention(_Layer(), query, key, value, attend)
    key[3, :, :6] = 1e3  # row 3 masks its first 6 positions: changing them must change nothing
    value[3, :, :6] = -1e3

    after, _ = grouped_decode_attention(_Layer(), query, key, value, attend)

    torch.testing.assert_close(after, before)


def test_a_cpu_generator_loads_with_it_and_writes_what_sdpa_writes(tiny_lm_folder):
    model, tokenizer = load_generator(str(tiny_lm_folder), ModelsConfig(device="cpu", dtype="float32"))
    settings = GenerationConfig(max_new_tokens=12, batch_size=3)
    assert model.config._attn_implementation == GROUPED_DECODE_ATTENTION

    grouped = TransformersGenerator(model, tokenizer, settings, model_id="tiny").generate(PROMPTS)
    model.set_attn_implementation("sdpa")
    reference = TransformersGenerator(model, tokenizer, settings, model_id="tiny").generate(PROMPTS)

    assert [p.text for p in grouped] == [p.text for p in reference]
    assert any(p.num_tokens > 1 for p in grouped)
