"""A tiny random chat LM built in code, for tests: no download, loads in well under a second.

It mirrors the default generator where it matters: a Llama architecture, a byte-level BPE
tokenizer, a ChatML chat template whose turns end with <|im_end|>, and an eos token
(<|endoftext|>) that is NOT the end-of-turn token, and no pad token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_TRAINING_TEXT = [
    "Title: Toy Story (1995)\nCategory: Animation, Children's, Comedy\nRating from the user: 5.0",
    "The user rated (out of 5) the following movies, listed from oldest to newest.",
    "Please give a detailed, high-level summary of the user's preferences.",
    "Review from the user: (rating: 4.0) A slow-burn thriller with a great cast.",
    "enjoys comedies and animated films, dislikes musicals and long dramas",
]


def build_tiny_lm(folder: Path, head_dim: int = 16, context: int = 1024) -> Path:
    """Write a 2-layer random LlamaForCausalLM (4 query heads, 2 KV heads of `head_dim`, a context
    of `context` tokens) and its tokenizer (safetensors) into `folder`. vLLM's CPU attention needs a
    head_dim of 32 or more."""
    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=4 * head_dim,
        intermediate_size=8 * head_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        # Larger than the usual 0.02 so that logits are well separated: greedy choices in tests
        # should not flip on float rounding differences between padded and unpadded batches.
        initializer_range=0.5,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def force_reply(model: PreTrainedModel, reply_ids: Sequence[int], end_id: int) -> None:
    """Rewire `model` in place so that, whatever the prompt, greedy decoding writes `reply_ids`
    then `end_id`.

    With the attention and MLP outputs zeroed, the final hidden state is the normalised embedding
    of the last token, so the next token depends on the last token only: a lookup table. Every
    token not in the reply maps to the reply's first token; each reply token maps to the next;
    the last maps to `end_id`. Orthonormal embeddings make each lookup exact. An `end_id` that is
    one of the reply's tokens makes the reply loop until max_new_tokens (a token then has two
    predecessors, so the lm_head rows add their directions).
    """
    inner = model.model
    hidden = model.config.hidden_size
    directions = torch.linalg.qr(torch.randn(hidden, len(reply_ids) + 1))[0].T  # orthonormal rows
    default_direction, reply_directions = directions[0], directions[1:]
    with torch.no_grad():
        for layer in inner.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        inner.norm.weight.fill_(1.0)
        inner.embed_tokens.weight.copy_(default_direction.expand_as(inner.embed_tokens.weight))
        model.lm_head.weight.zero_()
        model.lm_head.weight[reply_ids[0]] += default_direction
        for position, token_id in enumerate(reply_ids):
            inner.embed_tokens.weight[token_id] = reply_directions[position]
            next_id = reply_ids[position + 1] if position + 1 < len(reply_ids) else end_id
            model.lm_head.weight[next_id] += reply_directions[position]


def _build_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def write_tiny_gguf(hf_folder: Path, gguf_path: Path) -> Path:
    """Write the tiny LM in `hf_folder` as a float32 llama GGUF, the way llama.cpp's converter
    lays it out (q/k rows permuted for its rope, byte-level BPE vocabulary and merges), with
    <|im_end|> as the GGUF's eos like SmolLM2's GGUF."""
    import json

    import gguf

    model = LlamaForCausalLM.from_pretrained(hf_folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(hf_folder)
    config = model.config
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]

    writer = gguf.GGUFWriter(str(gguf_path), arch="llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIAL_TOKENS else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(vocab["<|im_start|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|im_end|>"])
    writer.add_chat_template(CHATML_TEMPLATE)
    for name, tensor in _gguf_tensors(model):
        writer.add_tensor(name, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path


def _gguf_tensors(model: LlamaForCausalLM):
    config = model.config
    yield "token_embd.weight", model.model.embed_tokens.weight.detach()
    for index, layer in enumerate(model.model.layers):
        block = f"blk.{index}"
        attention, mlp = layer.self_attn, layer.mlp
        yield f"{block}.attn_q.weight", _rope_permute(attention.q_proj.weight, config.num_attention_heads)
        yield f"{block}.attn_k.weight", _rope_permute(attention.k_proj.weight, config.num_key_value_heads)
        yield f"{block}.attn_v.weight", attention.v_proj.weight.detach()
        yield f"{block}.attn_output.weight", attention.o_proj.weight.detach()
        yield f"{block}.ffn_gate.weight", mlp.gate_proj.weight.detach()
        yield f"{block}.ffn_up.weight", mlp.up_proj.weight.detach()
        yield f"{block}.ffn_down.weight", mlp.down_proj.weight.detach()
        yield f"{block}.attn_norm.weight", layer.input_layernorm.weight.detach()
        yield f"{block}.ffn_norm.weight", layer.post_attention_layernorm.weight.detach()
    yield "output_norm.weight", model.model.norm.weight.detach()
    yield "output.weight", model.lm_head.weight.detach()


def _rope_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    # llama.cpp's convert_hf_to_gguf permute(); transformers undoes it when reading a GGUF.
    rows = weight.detach()
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)
