"""The one interface every profile generator offers, and what both backends share.

A generator turns chat-formatted prompts into profiles. Backends differ in engine (transformers on
any device, vLLM on CUDA) but agree on this contract: one profile per prompt, in prompt order,
stopped at the chat turn's end token, text without that token, finished by
lpt_core.generation.finishing (loops cut, trimmed to a complete sentence) unless the decoding
settings turn that off. Both backends and the training rollouts read generated ids through
`profile_from_tokens`, so they finish a profile identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lpt_core.generation.finishing import finish_profile

# Tokens that close an assistant turn in common chat templates (ChatML, Gemma, Llama 3, Phi).
# Tokenizers often name a different token as eos (SmolLM2's GGUF: <|endoftext|>), so stopping on
# eos alone would run every profile to max_new_tokens.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")


@dataclass(frozen=True)
class GeneratedProfile:
    """A generated profile. `num_tokens` counts the tokens generated for it (before any finishing
    trimmed its text), not the end-of-turn token; `finished` is True when the model ended its
    turn, False when max_new_tokens cut it (its text may still end a sentence once trimmed)."""

    text: str
    num_tokens: int
    finished: bool


class ProfileGenerator(Protocol):
    """Anything that writes profiles; `model_id` identifies the weights in stored profiles' keys."""

    model_id: str

    def generate(self, prompts: Sequence[str]) -> list[GeneratedProfile]:
        """One profile per prompt, in the order of `prompts`."""
        ...

    def close(self) -> None:
        """Release what the generator holds beyond its Python objects (an engine process, its share
        of GPU memory); idempotent. `opened_generator` calls it on leaving its `with` block."""
        ...


def stop_token_ids(tokenizer: Any, extra_eos: int | Sequence[int] | None = None) -> list[int]:
    """Ids that end generation: the tokenizer's eos, any known end-of-turn token in its vocabulary,
    and `extra_eos` (a model's generation_config.eos_token_id, which may be an int or a list)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    if isinstance(extra_eos, int):
        ids.append(extra_eos)
    elif extra_eos is not None:
        ids.extend(extra_eos)
    return sorted(set(ids))


def profile_from_tokens(
    tokenizer: Any, token_ids: Sequence[int], stop_ids: set[int], *, finish: bool = True
) -> GeneratedProfile:
    """Cut generated ids at the first stop token and decode the rest into a stripped profile,
    finished (lpt_core.generation.finishing) unless `finish` is False (GenerationConfig.finish_profiles).
    Rollouts keep the default: a reward scores the text a person would read."""
    for position, token_id in enumerate(token_ids):
        if token_id in stop_ids:
            kept, finished = list(token_ids[:position]), True
            break
    else:
        kept, finished = list(token_ids), False
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    profile = GeneratedProfile(text=text, num_tokens=len(kept), finished=finished)
    return finished_profile(profile) if finish else profile


def finished_profile(profile: GeneratedProfile) -> GeneratedProfile:
    """`profile` with its text finished (lpt_core.generation.finishing), cut by the cap or not as
    its `finished` flag says."""
    return dataclasses.replace(profile, text=finish_profile(profile.text, cut=not profile.finished))


def check_batch_tokenizer(tokenizer: Any) -> None:
    """Batched decoder-only generation needs left padding and a pad token."""
    if tokenizer.padding_side != "left":
        raise ValueError("tokenizer.padding_side must be 'left' for batched generation")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; load it with models.load_generator")
