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


def build_tiny_lm(folder: Path) -> Path:
    """Write a 2-layer random LlamaForCausalLM and its tokenizer (safetensors) into `folder`."""
    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
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
    the last maps to `end_id`. Orthonormal embeddings make each lookup exact.
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
        model.lm_head.weight[reply_ids[0]] = default_direction
        for position, token_id in enumerate(reply_ids):
            inner.embed_tokens.weight[token_id] = reply_directions[position]
            next_id = reply_ids[position + 1] if position + 1 < len(reply_ids) else end_id
            model.lm_head.weight[next_id] = reply_directions[position]


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
