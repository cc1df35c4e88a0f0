"""The RL phase on a tiny random chat LM and a tiny encoder: REBEL, GRPO and RLOO updates."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from builders import chat_rl_examples
from sentence_transformers import SentenceTransformer
from tiny_lm import force_reply

from lpt_core import paths
from lpt_core.config import ModelsConfig, RLConfig
from lpt_core.models import load_encoder, load_generator
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.examples import RLExample, rewards_of, rl_examples
from lpt_core.training.logprobs import sequence_logprobs
from lpt_core.training.policy import make_policy, merged_copy
from lpt_core.training.rebel import RebelTrainer, rebel_loss, shape_and_whiten
from lpt_core.training.reward import RankReward
from lpt_core.training.rl import probe_set, run_rl_phase
from lpt_core.training.rollout import prompt_batches

CPU_FP32 = ModelsConfig(device="cpu", dtype="float32")
ITEM_TEXTS = {
    "toy": "Title: Toy Story\nCategory: animation, children, comedy",
    "heat": "Title: Heat\nCategory: action, crime, thriller",
    "alien": "Title: Alien\nCategory: horror, science fiction",
    "emma": "Title: Emma\nCategory: romance, drama",
    "fargo": "Title: Fargo\nCategory: crime, drama, comedy",
    "shoah": "Title: Shoah\nCategory: documentary, war",
}
# 1e-3: the tiny LM's logits are large (initializer_range 0.5), so a REBEL step at 1e-2 overshoots
# its batch's loss at every step size the line search tries, and the update keeps no step.
TINY_RL = RLConfig(
    algorithm={"name": "rebel", "passes_per_batch": 2}, updates_per_round=2, prompts_per_update=2, micro_batch_size=2,
    sampling={"max_new_tokens": 6}, learning_rate=1e-3, beta=0.2,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reward(tiny_encoder_folder) -> RankReward:
    encoder = TextEncoder(SentenceTransformer(str(tiny_encoder_folder), device="cpu"))
    index = ItemIndex.build(list(ITEM_TEXTS), encoder.encode(list(ITEM_TEXTS.values())))
    return RankReward(encoder, index, kind="ndcg")


# (user turn, target, history, later targets): some rows with later targets
# (training.rl.reward_targets > 1), some without.
RL_ROWS = [
    ("The user rated the following movies.\n\n" + "\n\n".join(ITEM_TEXTS[i] for i in history), target, history, later)
    for history, target, later in [
        (["heat", "alien"], "toy", ("emma", "fargo")), (["emma"], "fargo", ()),
        (["toy", "fargo"], "shoah", ("heat",)), (["shoah"], "emma", ()),
    ]
]


def _changed(cfg: RLConfig, **changes) -> RLConfig:
    """`cfg` with `changes`, validated (model_copy would leave an algorithm name a plain string)."""
    return RLConfig.model_validate({**cfg.model_dump(), **changes})


def _lora_state(policy) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in policy.named_parameters() if "lora_" in name}


def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_make_policy_puts_lora_on_every_linear_layer_and_trains_only_it(tiny_lm_folder):
    model, _ = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, RLConfig(lora_r=4, lora_alpha=8))

    # Parameter names look like ...layers.0.self_attn.q_proj.lora_A.default.weight
    lora_targets = {name.split(".lora_A")[0].split(".")[-1] for name, _ in policy.named_parameters() if "lora_A" in name}
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]

    assert lora_targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert trainable and all("lora_" in name for name in trainable)


def test_one_rebel_update_trains_lora_while_the_disabled_adapter_stays_the_base_model(
    tiny_lm_folder, reward
):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    probe = torch.tensor([tokenizer("Review from the user: a great cast")["input_ids"]])
    base_logits = _logits(model, probe)
    policy = make_policy(model, TINY_RL)
    before = _lora_state(policy)
    with policy.disable_adapter():
        torch.testing.assert_close(_logits(policy, probe), base_logits)
    torch.testing.assert_close(_logits(policy, probe), base_logits)  # LoRA B starts at zero

    trainer = RebelTrainer(policy, tokenizer, reward, TINY_RL, seed=0)
    batch = chat_rl_examples(tokenizer, RL_ROWS)[:2]
    metrics = trainer.update(batch)

    after = _lora_state(policy)
    # Every LoRA B moves (A gets no gradient while B is still zero, so it can lag one step).
    assert all(not torch.equal(before[name], after[name]) for name in after if "lora_B" in name)
    assert not torch.allclose(_logits(policy, probe), base_logits)
    with policy.disable_adapter():
        torch.testing.assert_close(_logits(policy, probe), base_logits)
    assert set(metrics) >= {"reward_mean", "reward_std", "kl", "loss", "profile_tokens", "seconds", "rollout_seconds"}
    assert 0.0 < metrics["reward_mean"] <= 1.0
    assert 0 < metrics["profile_tokens"] <= TINY_RL.sampling.max_new_tokens
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-4)  # sampled before any step: pi_old = pi_ref
    assert metrics["kl_std"] == pytest.approx(0.0, abs=1e-4)
    # After a step the policy's samples differ from the base's by different amounts.
    assert trainer.update(batch)["kl_std"] > 1e-3


def test_a_merged_copy_writes_as_the_policy_does_and_leaves_the_policy_as_it_was(tiny_lm_folder, reward):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, TINY_RL)
    RebelTrainer(policy, tokenizer, reward, TINY_RL, seed=0).update(chat_rl_examples(tokenizer, RL_ROWS)[:2])  # adapter != 0
    probe = torch.tensor([tokenizer("Review from the user: a great cast")["input_ids"]])
    policy.eval()
    expected = _logits(policy, probe)
    policy.train()
    before = _lora_state(policy)

    with merged_copy(policy) as merged:
        assert not any("lora_" in name for name, _ in merged.named_parameters())
        # W x + B (A x) vs (W + B A) x: float32 rounding of a different summation order only.
        torch.testing.assert_close(_logits(merged, probe), expected, rtol=1e-5, atol=1e-4)

    assert policy.training
    assert all(torch.equal(before[name], value) for name, value in _lora_state(policy).items())
    assert any(value.any() for name, value in before.items() if "lora_B" in name)  # a real merge


def test_rollout_stops_at_the_end_of_turn_token_and_trains_on_it(tiny_lm_folder, reward):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    reply = tokenizer(" enjoys comedies", add_special_tokens=False)["input_ids"]
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    force_reply(model, reply, end_id=end_of_turn)
    # Near-greedy sampling: force_reply's logits separate the next token by 1 only.
    cfg = _changed(TINY_RL, sampling={"temperature": 0.01, "max_new_tokens": 10})
    trainer = RebelTrainer(make_policy(model, cfg), tokenizer, reward, cfg, seed=0)

    rollout = trainer.rollout([example.prompt for example in chat_rl_examples(tokenizer, RL_ROWS)[:2]])

    assert [p.text for p in rollout.profiles] == ["enjoys comedies"] * 4
    assert all(p.finished and p.num_tokens == len(reply) for p in rollout.profiles)
    completions = [ids[mask.bool()].tolist() for ids, mask in zip(rollout.input_ids, rollout.completion_mask)]
    assert completions == [reply + [end_of_turn]] * 4


def test_prompt_batches_cycle_through_every_example_in_a_seeded_order():
    examples = [RLExample(f"prompt {i}", f"item {i}", []) for i in range(5)]

    batches = prompt_batches(examples, 2, seed=3)
    first_ten = [example for _ in range(5) for example in next(batches)]

    assert sorted(first_ten[:5], key=lambda e: e.prompt) == examples
    assert sorted(first_ten[5:], key=lambda e: e.prompt) == examples
    again = prompt_batches(examples, 2, seed=3)
    assert [e for _ in range(5) for e in next(again)] == first_ten


def test_rl_examples_take_later_targets_from_the_same_user_s_next_windows():
    rows = pl.DataFrame({
        "user_id": ["u", "u", "u", "v", "u"],
        "window": [0, 1, 2, 0, 3],
        "prompt": ["u0", "u1", "u2", "v0", "u3"],
        # u's window 2 target "b" is in windows 0's and 1's histories: they cannot rank it.
        "history_item_ids": [["a", "b"], ["b", "c"], ["c", "d"], ["x"], ["d", "e"]],
        "target_item_id": ["c", "e", "b", "y", "f"],
    })

    method = rl_examples(rows)
    three = rl_examples(rows, reward_targets=3)

    assert [e.later_target_ids for e in method] == [()] * 5
    assert [e.prompt for e in three] == ["u0", "u1", "u2", "v0", "u3"]
    assert [e.later_target_ids for e in three] == [("e",), ("f",), ("f",), (), ()]
    assert three[0] == RLExample("u0", "c", ["a", "b"], ("e",))


def test_rl_examples_take_the_next_interactions_after_the_target_from_overlapping_windows():
    # u's interactions a b c d e f g, windows of 3 with stride 2: each target is the next item.
    rows = pl.DataFrame({
        "user_id": ["u", "v", "u", "u"],
        "window": [0, 0, 1, 2],
        "prompt": ["u0", "v0", "u1", "u2"],
        "history_item_ids": [["a", "b", "c"], ["x"], ["c", "d", "e"], ["e", "f", "a"]],
        "target_item_id": ["d", "y", "f", "g"],
    })

    three = rl_examples(rows, reward_targets=3, targets_from="next_interactions")
    windows = rl_examples(rows, reward_targets=3)

    # Every interaction after the target counts, not only later windows' targets; "a", in u2's
    # history, cannot be ranked for it, and u's sequence ends at its last target.
    assert [e.later_target_ids for e in three] == [("e", "f"), (), ("g",), ()]
    assert [e.later_target_ids for e in windows] == [("f", "g"), (), ("g",), ()]
    assert three[0] == RLExample("u0", "d", ["a", "b", "c"], ("e", "f"))


def test_next_interactions_never_reach_back_before_the_window_when_an_item_repeats():
    # w consumes p twice: p q r s p t u; window 1's target is the second p.
    rows = pl.DataFrame({
        "user_id": ["w", "w", "w"],
        "window": [0, 1, 2],
        "prompt": ["w0", "w1", "w2"],
        "history_item_ids": [["p", "q"], ["r", "s"], ["p", "t"]],
        "target_item_id": ["r", "p", "u"],
    })

    three = rl_examples(rows, reward_targets=3, targets_from="next_interactions")

    # Window 1 starts after its own history (r s), not after p's first time (which would bring
    # back q); a repeat counts once, at its first time, so window 0's next two are s and t.
    assert [e.later_target_ids for e in three] == [("s", "t"), ("t", "u"), ()]


@pytest.mark.parametrize(
    "settings",
    [{"algorithm": {"name": "rebel", "passes_per_batch": 2}},
     {"algorithm": {"name": "rebel", "passes_per_batch": 2, "reward_whitening": "within_prompt"}},
     {"algorithm": "grpo"}, {"algorithm": "rloo"}],
    ids=["rebel", "rebel-within-prompt", "grpo", "rloo"],
)
def test_run_rl_phase_runs_each_algorithm_and_reports_every_update(
    settings, tiny_lm_folder, reward, tmp_path
):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    cfg = _changed(TINY_RL, **settings)
    policy = make_policy(model, cfg)
    before = _lora_state(policy)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    seen: list[tuple[int, dict]] = []

    history = run_rl_phase(
        policy, tokenizer, chat_rl_examples(tokenizer, RL_ROWS), reward, cfg, seed=0, output_dir=tmp_path,
        on_update=lambda step, metrics: seen.append((step, metrics)),
    )

    assert [step for step, _ in seen] == [1, 2]
    assert [metrics for _, metrics in seen] == history
    for metrics in history:
        assert set(metrics) >= {"reward_mean", "reward_std", "loss", "profile_tokens", "seconds"}
        assert 0.0 <= metrics["reward_mean"] <= 1.0
    after = _lora_state(policy)
    assert after.keys() == before.keys()  # TRL's reference copy of the adapter is not left behind
    assert all(not torch.equal(before[name], after[name]) for name in after if "lora_B" in name)
    # The end-of-turn stop TRL was given is not left in the model's own generation config.
    assert end_of_turn not in torch.atleast_1d(torch.tensor(policy.generation_config.eos_token_id)).tolist()


def test_a_registered_algorithm_runs_through_the_phase_on_the_shared_rollout_and_batches(
    tiny_lm_folder, reward, tmp_path, monkeypatch
):
    """An algorithm outside lpt_core (tests/toy_algorithm.py), registered by its import path:
    the config takes its settings, run_rl_phase dispatches to its runner, and the shared rollout
    draws its 3 samples per prompt."""
    import toy_algorithm

    from lpt_core.training.algorithms import RL_ALGORITHM_MODULES

    monkeypatch.setitem(RL_ALGORITHM_MODULES, "toy", toy_algorithm.__name__)
    with pytest.raises(ValueError, match="samples_per_prompt 2: toy takes at least 3"):
        _changed(TINY_RL, algorithm="toy")
    cfg = _changed(TINY_RL, algorithm={"name": "toy", "step_scale": 2.0}, samples_per_prompt=3)
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    policy = make_policy(model, cfg)
    before = _lora_state(policy)

    history = run_rl_phase(policy, tokenizer, chat_rl_examples(tokenizer, RL_ROWS), reward, cfg, seed=0, output_dir=tmp_path)

    assert isinstance(cfg.algorithm, toy_algorithm.ToySettings)
    assert [metrics["rows"] for metrics in history] == [2 * 3, 2 * 3]  # 2 prompts x 3 samples
    after = _lora_state(policy)
    assert any(not torch.equal(before[name], after[name]) for name in after if "lora_B" in name)


def test_trl_samples_stop_at_the_end_of_turn_token(tiny_lm_folder, reward, tmp_path):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    reply = tokenizer(" enjoys comedies", add_special_tokens=False)["input_ids"]
    force_reply(model, reply, end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    cfg = _changed(TINY_RL, algorithm="grpo", updates_per_round=1, sampling={"temperature": 0.01, "max_new_tokens": 10})

    (metrics,) = run_rl_phase(make_policy(model, cfg), tokenizer, chat_rl_examples(tokenizer, RL_ROWS), reward, cfg, 0, tmp_path)

    # TRL counts the end-of-turn token in a completion's length; without the stop it would be 10.
    assert metrics["profile_tokens"] == len(reply) + 1
    assert metrics["finished_share"] == 1.0


def _first_layers(model: torch.nn.Module, count: int) -> torch.nn.Module:
    """The model cut to its first `count` decoder layers (embeddings and head kept)."""
    model.model.layers = model.model.layers[:count]
    model.config.num_hidden_layers = count
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:count]
    return model


# bf16 keeps the first 4 of SmolLM2's 30 layers: a CPU without bf16 instructions emulates it at
# about 1 GFLOP/s, and the whole model made this one case 12-14 minutes of the suite there (AMD
# EPYC, AVX2 only, session 20). Four real layers still carry bf16 rounding through a residual
# stream into sequence log-probs, which is what the case checks the line search against.
@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "layers"), [("float32", None), ("bfloat16", 4)])
def test_a_rebel_update_on_smollm2_fits_its_regression_towards_the_better_profiles(dtype, layers):
    """Real SmolLM2 and all-MiniLM, one update (4 passes) on a fixed rollout: REBEL's loss on that
    rollout falls, and on average each pair's log-ratio gap log pi/pi_old(better) - log
    pi/pi_old(worse) grows, i.e. the policy moved towards the higher-reward profiles. (Whether the
    SAMPLED mean reward rises over a few updates is too noisy to assert at the few samples per
    update this CPU allows in a test: one update of 8 prompts x 2 x 64 tokens takes minutes here.)

    Both numeric paths, forced: float32 (CPUs without bf16 instructions) and bf16 (CPUs with them,
    GPUs; the model cut to 4 layers, see above); before the line search, the float32 path's loss
    rose from 3.5 to 11.6 at this rate."""
    models_dir = paths.models_dir()
    if not (models_dir / "smollm2-135m-instruct").is_dir() or not (models_dir / "all-minilm-l6-v2").is_dir():
        pytest.skip("default models not fetched (make setup)")
    model, tokenizer = load_generator("smollm2-135m-instruct", ModelsConfig(device="cpu", dtype=dtype))
    if layers:
        model = _first_layers(model, layers)
    encoder = TextEncoder(load_encoder("all-minilm-l6-v2", CPU_FP32))
    index = ItemIndex.build(list(ITEM_TEXTS), encoder.encode(list(ITEM_TEXTS.values())))
    reward = RankReward(encoder, index, kind="mrr")
    cfg = RLConfig(prompts_per_update=3, sampling={"max_new_tokens": 16}, learning_rate=2e-4, beta=0.0, micro_batch_size=2)
    trainer = RebelTrainer(make_policy(model, cfg), tokenizer, reward, cfg, seed=0)
    batch = chat_rl_examples(tokenizer, RL_ROWS)[:3]
    rows = [example for example in batch for _ in range(2)]

    # update() samples with the same seed, so this rollout is the one it trains on.
    rollout = trainer.rollout([example.prompt for example in batch])
    raw_rewards = torch.tensor(rewards_of(reward, [p.text for p in rollout.profiles], rows))
    tensors = (rollout.input_ids, rollout.attention_mask, rollout.completion_mask)
    with torch.no_grad():
        logp_old = sequence_logprobs(trainer.policy, *tensors)
    rewards = shape_and_whiten(raw_rewards, logp_old, logp_old, beta=0.0)
    first, second = slice(0, None, 2), slice(1, None, 2)
    metrics = trainer.update(batch)
    with torch.no_grad():
        logp_new = sequence_logprobs(trainer.policy, *tensors)

    def loss(logp: torch.Tensor) -> float:
        return rebel_loss(logp[first], logp_old[first], logp[second], logp_old[second],
                          rewards[first], rewards[second], cfg.algorithm.eta).item()

    log_ratio = logp_new - logp_old
    signed_gaps = (log_ratio[first] - log_ratio[second]) * torch.sign(rewards[first] - rewards[second])
    assert (rewards[first] != rewards[second]).any(), f"every pair tied on reward: {raw_rewards.tolist()}"
    assert loss(logp_new) < loss(logp_old)
    assert signed_gaps.mean() > 0, signed_gaps.tolist()
    # The update's own report agrees. (Its loss_after is computed in micro-batches, so in bf16 it
    # differs from this test's one-batch pass by rounding; before any step both are exact.)
    assert metrics["loss_before"] == pytest.approx(loss(logp_old), rel=1e-3)
    assert metrics["loss_after"] < metrics["loss_before"]
    assert metrics["steps_kept"] >= 1


def test_a_rebel_step_that_raises_its_batch_loss_is_undone_and_retried_smaller(tiny_lm_folder, reward):
    """At a learning rate far too large for the tiny LM, steps overshoot: the update must undo
    them (backtracks > 0) and end no worse than it started on its own batch."""
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    cfg = _changed(TINY_RL, learning_rate=3.0, algorithm={"name": "rebel", "passes_per_batch": 3, "max_backtracks": 3})
    trainer = RebelTrainer(make_policy(model, cfg), tokenizer, reward, cfg, seed=0)
    first, second = (trainer.update(chat_rl_examples(tokenizer, RL_ROWS)) for _ in range(2))

    for metrics in (first, second):
        assert metrics["backtracks"] > 0
        assert metrics["loss_after"] <= metrics["loss_before"]
        # Each update starts at the configured rate: no step size is carried over from the last
        # one (in bf16 a carried size ratcheted down to nothing; docs/rl_step.md, 4).
        assert metrics["step_scale"] == pytest.approx(0.5 ** metrics["backtracks"])
    assert {"pairs_toward_better", "grad_norm", "logp_path_gap"} <= set(first)
    assert first["grad_norm"] > 0


def test_without_the_line_search_every_step_is_kept(tiny_lm_folder, reward):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    cfg = _changed(TINY_RL, learning_rate=3.0, algorithm={"name": "rebel", "passes_per_batch": 3, "max_backtracks": 0})
    metrics = RebelTrainer(make_policy(model, cfg), tokenizer, reward, cfg, seed=0).update(chat_rl_examples(tokenizer, RL_ROWS))

    assert metrics["backtracks"] == 0 and metrics["steps_kept"] == 3 and metrics["step_scale"] == 1.0


def test_the_probe_scores_greedy_profiles_of_a_fixed_set_before_and_during_the_phase(tiny_lm_folder, reward, tmp_path):
    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    cfg = TINY_RL.model_copy(update={"updates_per_round": 3, "probe_examples": 2, "probe_every": 2})
    examples = chat_rl_examples(tokenizer, RL_ROWS)

    history = run_rl_phase(make_policy(model, cfg), tokenizer, examples, reward, cfg, seed=0, output_dir=tmp_path)

    assert [("probe_reward_start" in m, "probe_reward" in m) for m in history] == [
        (True, False), (False, True), (False, True)  # every 2nd update and after the last
    ]
    assert all(0.0 <= m.get("probe_reward", 0.5) <= 1.0 for m in history)
    assert probe_set(examples, 2) == [examples[0], examples[2]]
    assert probe_set(examples, 10) == examples


def test_the_regression_measures_pi_old_on_its_own_pass_so_numeric_path_noise_never_enters(tiny_lm_folder, reward):
    """The pi_old/pi_ref pass batches rows differently from the regression (and mixes adapters); in
    bf16 that alone moved sequence log-probs by ~1 nat. Whatever pi_old that pass hands over, the
    regression starts from zero log-ratio gaps, at the loss of the reward gaps alone."""
    from lpt_core.training.rebel import _BatchRegression

    model, tokenizer = load_generator(str(tiny_lm_folder), CPU_FP32)
    trainer = RebelTrainer(make_policy(model, TINY_RL), tokenizer, reward, TINY_RL, seed=0)
    rollout = trainer.rollout([example.prompt for example in chat_rl_examples(tokenizer, RL_ROWS)])
    logp_old, _ = trainer._old_and_ref_logprobs(rollout)
    rewards = torch.tensor([1.0, -1.0, 0.5, 0.5, -2.0, 1.0, 0.0, 3.0])
    noisy_old = logp_old + torch.linspace(-1.0, 1.0, len(logp_old))  # as if another path disagreed

    loss, gaps = _BatchRegression(trainer, rollout, noisy_old, rewards).loss_and_grad()

    assert torch.equal(gaps, torch.zeros_like(gaps))
    expected = ((TINY_RL.algorithm.eta * (rewards[0::2] - rewards[1::2])) ** 2).mean()
    assert loss == pytest.approx(float(expected), rel=1e-6)
