"""REBEL's loss and reward shaping against direct computations, and sequence log-probs on a tiny LM."""

from __future__ import annotations

import pytest
import torch

from lpt_core.config import ModelsConfig
from lpt_core.models import load_generator
from lpt_core.training import logprobs
from lpt_core.training.logprobs import sequence_logprobs
from lpt_core.training.rebel import rebel_loss, shape_and_whiten

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rebel_loss_and_its_gradient_match_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    pairs, dim, eta = 5, 3, 0.7
    theta = torch.randn(dim, generator=generator, requires_grad=True)
    features_1, features_2 = torch.randn(2, pairs, dim, generator=generator)
    old_1, old_2, reward_1, reward_2 = torch.randn(4, pairs, generator=generator)

    loss = rebel_loss(features_1 @ theta, old_1, features_2 @ theta, old_2, reward_1, reward_2, eta)
    (grad,) = torch.autograd.grad(loss, theta)

    with torch.no_grad():
        residual = (features_1 @ theta - old_1) - (features_2 @ theta - old_2) - eta * (reward_1 - reward_2)
        expected_loss = (residual**2).sum() / pairs
        # d/dtheta of mean(residual^2) = mean(2 * residual * d(logp_new_1 - logp_new_2)/dtheta)
        expected_grad = (2 * residual[:, None] * (features_1 - features_2)).sum(dim=0) / pairs
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-6)
    torch.testing.assert_close(grad, expected_grad)


def test_identical_samples_of_a_pair_give_zero_loss_without_kl_shaping():
    raw = torch.tensor([0.3, 0.3, 0.8, 0.8, 0.1, 0.1])
    logp_old = torch.tensor([-5.0, -5.0, -2.0, -2.0, -9.0, -9.0])
    logp_ref = torch.tensor([-4.0, -4.0, -3.0, -3.0, -1.0, -1.0])
    rewards = shape_and_whiten(raw, logp_old, logp_ref, beta=0.0)
    logp_new = logp_old + torch.tensor([0.4, 0.4, -1.0, -1.0, 2.0, 2.0])

    first, second = slice(0, None, 2), slice(1, None, 2)
    loss = rebel_loss(
        logp_new[first], logp_old[first], logp_new[second], logp_old[second],
        rewards[first], rewards[second], eta=1.0,
    )

    assert loss.item() == 0.0


def test_shape_and_whiten_applies_the_kl_penalty_then_standardises():
    raw = torch.tensor([1.0, 0.0, 0.5, 0.25])
    logp_old = torch.tensor([-1.0, -3.0, -2.0, -2.0])
    logp_ref = torch.tensor([-6.0, -3.0, -2.5, -1.0])

    without_kl = shape_and_whiten(raw, logp_old, logp_ref, beta=0.0)
    with_kl = shape_and_whiten(raw, logp_old, logp_ref, beta=0.5)

    shaped = raw - 0.5 * (logp_old - logp_ref)  # [-1.5, 0.0, 0.25, 0.75]
    torch.testing.assert_close(with_kl, (shaped - shaped.mean()) / shaped.std(correction=0))
    for whitened in (without_kl, with_kl):
        assert whitened.mean().item() == pytest.approx(0.0, abs=1e-6)
        assert whitened.std(correction=0).item() == pytest.approx(1.0, abs=1e-6)
    # The first sample is the best by raw reward, but its large KL makes it the worst once shaped.
    assert without_kl.argmax().item() == 0 and with_kl.argmin().item() == 0


def test_within_prompt_whitening_keeps_each_pair_s_gap_direction_and_scales_gaps_to_unit_spread():
    # Two users far apart (rewards near 0.1 and near 0.9), small gaps within each user's pair.
    raw = torch.tensor([0.10, 0.12, 0.90, 0.86])
    logp = torch.zeros(4)

    batch = shape_and_whiten(raw, logp, logp, beta=0.0, whiten="batch")
    within = shape_and_whiten(raw, logp, logp, beta=0.0, whiten="within_prompt")

    deviations = torch.tensor([-0.01, 0.01, 0.02, -0.02])
    torch.testing.assert_close(within, deviations / deviations.pow(2).mean().sqrt())
    assert within.pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)  # up to the 1e-8 in the divisor
    # The pairs' gaps point the same way under both, but batch whitening shrinks them to the
    # within/between spread ratio: these are what REBEL regresses the log-ratio gaps on.
    batch_gaps, within_gaps = batch[0::2] - batch[1::2], within[0::2] - within[1::2]
    assert torch.equal(torch.sign(batch_gaps), torch.sign(within_gaps))
    assert (within_gaps.abs() > 10 * batch_gaps.abs()).all()


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_folder):
    model, _ = load_generator(str(tiny_lm_folder), ModelsConfig(device="cpu", dtype="float32"))
    return model


def _naive_logprobs(model, sequences: list[list[int]], prompt_lengths: list[int]) -> torch.Tensor:
    """Each sequence alone, unpadded, through a full float32 log_softmax."""
    totals = []
    for ids, prompt_length in zip(sequences, prompt_lengths, strict=True):
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        token_logprobs = torch.log_softmax(logits[:-1], dim=-1).gather(-1, torch.tensor(ids[1:])[:, None])
        totals.append(token_logprobs[prompt_length - 1 :].sum())
    return torch.stack(totals)


def _padded_batch(sequences: list[list[int]], prompt_lengths: list[int], pad_id: int):
    """Prompts left padded to a common width, completions right padded after them."""
    prompt_width = max(prompt_lengths)
    completion_width = max(len(s) - p for s, p in zip(sequences, prompt_lengths, strict=True))
    ids, attention, completion = [], [], []
    for sequence, prompt_length in zip(sequences, prompt_lengths, strict=True):
        left = prompt_width - prompt_length
        right = completion_width - (len(sequence) - prompt_length)
        ids.append([pad_id] * left + sequence + [pad_id] * right)
        attention.append([0] * left + [1] * len(sequence) + [0] * right)
        completion.append([0] * prompt_width + [1] * (len(sequence) - prompt_length) + [0] * right)
    return torch.tensor(ids), torch.tensor(attention), torch.tensor(completion)


def test_sequence_logprobs_of_a_padded_batch_equal_the_naive_per_sequence_computation(
    tiny_model, monkeypatch
):
    # Chunks of 2 positions at this batch and vocabulary size: several chunks per batch.
    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", 3 * tiny_model.config.vocab_size * 2)
    generator = torch.Generator().manual_seed(0)
    lengths = [(4, 9), (7, 3), (2, 6)]  # (prompt tokens, completion tokens)
    sequences = [torch.randint(5, 300, (p + c,), generator=generator).tolist() for p, c in lengths]
    prompt_lengths = [p for p, _ in lengths]
    batch = _padded_batch(sequences, prompt_lengths, pad_id=0)

    ours = sequence_logprobs(tiny_model, *batch)
    ours.sum().backward()
    ours_grad = tiny_model.lm_head.weight.grad.clone()
    tiny_model.zero_grad()
    naive = _naive_logprobs(tiny_model, sequences, prompt_lengths)
    naive.sum().backward()
    naive_grad = tiny_model.lm_head.weight.grad.clone()
    tiny_model.zero_grad()

    torch.testing.assert_close(ours, naive, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours_grad, naive_grad, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(sequence_logprobs(tiny_model, *batch), naive.detach(), atol=1e-4, rtol=1e-5)


def test_sequence_logprobs_rejects_mismatched_shapes(tiny_model):
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="shapes differ"):
        sequence_logprobs(tiny_model, ids, torch.ones(2, 4), torch.ones(2, 5))
