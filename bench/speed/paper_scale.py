"""Seconds per REBEL update at the paper's shape: a reference-style update against the project's own.

Both updates run in one process on one device, on the same random-weight policy (LoRA from
lpt_core.training.rl.make_policy), with the same prompts and a cheap deterministic reward:

- reference-style: HF `generate` with the default dynamic KV cache, every row forced to decode the
  full --new-tokens (the reference disables EOS), then per user (2 sequences) a no-grad forward for
  log pi_old and log pi_ref, then --passes passes of per-user forward/backward with a float32
  log-softmax over the whole vocabulary at every position, and an AdamW step per user.
- ours: lpt_core.training.rebel.RebelTrainer.update, its rollout on the static (compiled on CUDA)
  KV cache, its lean log-probs (logits of completion positions only, chunked float32) and
  --ours-micro-batch sequences per step. Rows are forced to the same length as the reference's.

Then bulk profile generation (the LoRA merged, as the training loop does before writing profiles)
in tokens/s against the weight-streaming floor: bytes read per decode step / copy bandwidth.

CUDA (default when available): gemma-2b shape, 16 users x 2 samples x 512 tokens from 1024-token
prompts, LoRA r=1024. Needs lpt_core importable (run from the repository root with PYTHONPATH=.):

    PYTHONPATH=. python3 bench/speed/paper_scale.py --out paper_scale.txt

CPU (default without CUDA): a random model of SmolLM2-135M's widths with 4 blocks, at a small size,
so the script is checked end to end (about a minute) before GPU minutes are spent on it. Every figure is also written to --out as it
is printed, so a run cut short keeps what it measured; a section that runs out of GPU memory or
past --budget-s is reported and skipped, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import random
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
import transformers
from generation import GEMMA_2B_SHAPE, _word_tokenizer  # bench/speed/generation.py, beside this script
from transformers import GenerationConfig as HFGenerationConfig
from transformers import LlamaConfig, PretrainedConfig

from lpt_core.config import GenerationConfig, RLConfig
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import pick_dtype
from lpt_core.training.examples import RLExample
from lpt_core.training.policy import make_policy
from lpt_core.training.rebel import SAMPLES_PER_PROMPT, RebelTrainer, rebel_loss, shape_and_whiten

# SmolLM2-135M's widths and vocabulary with 4 of its 30 blocks: the CPU run checks the script end
# to end in about a minute on a shared 2-core machine; it is not a figure to compare with anything.
SMOLLM2_135M_WIDTHS = LlamaConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=4,
    num_attention_heads=9,
    num_key_value_heads=3,
    tie_word_embeddings=True,
)
PROMPT_WORDS = 1000  # distinct words of the word tokenizer the prompts are drawn from
# Seconds a section is expected to need at the paper's shape on an H100/H200 (generous): a section
# starts only when this much of --budget-s is left, and ours stops timing updates early to leave
# the reference and the bulk generation theirs.
REFERENCE_NEEDS_S = 110.0
BULK_NEEDS_S = 60.0
# How many times faster than the reference-style loop our REBEL update is meant to be (issue 29).
SPEEDUP_GOAL = 10.0


@dataclass(frozen=True)
class Shape:
    """The workload: model architecture, users per update, prompt and profile tokens, LoRA size."""

    name: str
    model_config: PretrainedConfig
    users: int
    prompt_tokens: int
    new_tokens: int
    lora_r: int
    lora_alpha: int
    bulk_batch: int


PAPER_SHAPE = Shape("gemma-2b", GEMMA_2B_SHAPE, users=16, prompt_tokens=1024, new_tokens=512,
                    lora_r=1024, lora_alpha=2048, bulk_batch=128)
CPU_SHAPE = Shape("smollm2-135m widths, 4 blocks", SMOLLM2_135M_WIDTHS, users=4, prompt_tokens=32, new_tokens=8,
                  lora_r=16, lora_alpha=32, bulk_batch=8)


class Report:
    """Lines to stdout (flushed: the GPU run is watched live) and to --out as they come."""

    def __init__(self, out: Path | None) -> None:
        self._file: TextIO | None = None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._file = out.open("w", encoding="utf-8")

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()


class Stopwatch:
    """Seconds per named section, summed over calls, with the device synchronised at both ends
    (CUDA kernels run asynchronously: without a sync the time lands in whatever section waits)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        _sync(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.counts[name] = self.counts.get(name, 0) + 1

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, timed under `name` at every call."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.section(name):
                return function(*args, **kwargs)

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()


class HashReward:
    """RankReward's call signature with a deterministic pseudo-random reward in [0, 1) per
    completion (a hash of its text): timing needs a reward, not a recommender."""

    __name__ = "hash_reward"

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[str],
        target_item_id: Sequence[str],
        history_item_ids: Sequence[Sequence[str]],
        **_: Any,
    ) -> list[float]:
        return [zlib.crc32(text.encode("utf-8")) / 2**32 for text in completions]


class Budget:
    """Wall-clock allowance of the whole run; sections that would start after it are skipped."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()


def main() -> None:
    args = parse_arguments()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = _shape(args, device)
    report = Report(args.out)
    budget = Budget(args.budget_s if args.budget_s is not None else (420.0 if device.type == "cuda" else None))
    describe_machine(report, device, shape, args)
    bandwidth = copy_bandwidth(device)
    report.line(f"device-to-device copy bandwidth (bytes read + written): {bandwidth / 1e9:.0f} GB/s")

    dtype = pick_dtype("auto", device)
    workload = build_workload(report, shape, args, device, dtype)
    policy, tokenizer, examples, cfg = workload.policy, workload.tokenizer, workload.examples, workload.cfg

    bulk_needs = BULK_NEEDS_S if shape.bulk_batch > 0 else 0.0
    results: dict[str, float] = {}
    ours = guarded(
        report, budget, "ours", 0.0,
        lambda: bench_ours(report, policy, tokenizer, examples, cfg, args, budget, REFERENCE_NEEDS_S + bulk_needs),
    )
    if ours is not None:
        results["ours"] = ours
    reference = guarded(
        report, budget, "reference", REFERENCE_NEEDS_S,
        lambda: bench_reference(report, policy, tokenizer, examples, cfg, args, budget, bulk_needs),
    )
    if reference is not None:
        results["reference"] = reference
    if len(results) == 2:
        ratio = results["reference"] / results["ours"]
        report.line(f"RESULT seconds per update: reference-style {results['reference']:.1f}, ours {results['ours']:.1f}, "
                    f"ours is {ratio:.1f}x faster (goal >= {SPEEDUP_GOAL:.0f}x)")
    if shape.bulk_batch > 0:
        guarded(report, budget, "bulk generation", BULK_NEEDS_S,
                lambda: bench_bulk(report, policy, tokenizer, shape, bandwidth, device, dtype))
    report.line(f"total wall time {budget.elapsed():.0f} s, of which this process had the CPU for "
                f"{time.process_time():.0f} s (less than wall time: the machine's cores are shared)")


@dataclass
class Workload:
    """The random-weight LoRA policy, its word tokenizer, one update's prompts, and the settings."""

    policy: Any
    tokenizer: Any
    examples: list[RLExample]
    cfg: RLConfig


def build_workload(report: Report, shape: Shape, args: argparse.Namespace, device: torch.device,
                   dtype: torch.dtype) -> Workload:
    tokenizer = _word_tokenizer(vocab_size=PROMPT_WORDS)
    cfg = RLConfig(
        prompts_per_update=shape.users,
        algorithm={"name": "rebel", "passes_per_batch": args.passes},
        micro_batch_size=args.ours_micro_batch,
        learning_rate=1e-7,  # the reference's (Gemma); the value does not change the timing
        beta=0.2,
        sampling={"max_new_tokens": shape.new_tokens},
        lora_r=shape.lora_r,
        lora_alpha=shape.lora_alpha,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    started = time.perf_counter()
    policy = make_policy(random_model(shape.model_config, dtype, device, tokenizer), cfg)
    report.line(f"model built in {time.perf_counter() - started:.1f} s: {parameter_summary(policy)}")
    return Workload(policy, tokenizer, examples_for(shape, tokenizer), cfg)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--users", type=int, help="prompts per update (default: 16 on CUDA, 4 on CPU)")
    parser.add_argument("--prompt-tokens", type=int, help="default: 1024 on CUDA, 32 on CPU")
    parser.add_argument("--new-tokens", type=int, help="tokens per profile (default: 512 on CUDA, 8 on CPU)")
    parser.add_argument("--lora-r", type=int, help="default: 1024 on CUDA (alpha 2r), 16 on CPU")
    parser.add_argument("--bulk-batch", type=int, help="bulk generation batch, 0 skips it (default: 128 on CUDA, 8 on CPU)")
    parser.add_argument("--passes", type=int, default=4, help="REBEL passes per rollout batch (reference 4)")
    parser.add_argument("--reference-updates", type=int, default=1, help="timed reference-style updates")
    parser.add_argument("--reference-warmup", choices=["short", "full", "none"], default="short",
                        help="short: a few decode steps and one user's passes, enough to load kernels")
    parser.add_argument("--ours-updates", type=int, default=2, help="timed updates of ours, after one warm-up")
    parser.add_argument("--ours-micro-batch", type=int, default=4, help="sequences per forward/backward in ours")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="in ours (off in the reference)")
    parser.add_argument("--budget-s", type=float, help="skip sections starting after this many seconds "
                        "(default: 420 on CUDA, none on CPU)")
    return parser.parse_args(argv)


def _shape(args: argparse.Namespace, device: torch.device) -> Shape:
    shape = PAPER_SHAPE if device.type == "cuda" else CPU_SHAPE
    overrides = {
        "users": args.users,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "bulk_batch": args.bulk_batch,
    }
    if args.lora_r is not None:
        overrides.update(lora_r=args.lora_r, lora_alpha=2 * args.lora_r)
    return replace(shape, **{key: value for key, value in overrides.items() if value is not None})


def describe_machine(report: Report, device: torch.device, shape: Shape, args: argparse.Namespace) -> None:
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    report.line(f"card: {card}; torch {torch.__version__}, transformers {transformers.__version__}")
    report.line(
        f"shape {shape.name}: {shape.users} users x {SAMPLES_PER_PROMPT} samples x {shape.new_tokens} forced tokens "
        f"from {shape.prompt_tokens}-token prompts, LoRA r={shape.lora_r} alpha={shape.lora_alpha} on all linear "
        f"layers, {args.passes} passes; ours: micro-batch {args.ours_micro_batch} sequences, gradient "
        f"checkpointing {'on' if args.gradient_checkpointing else 'off'}"
    )


def random_model(config: PretrainedConfig, dtype: torch.dtype, device: torch.device, tokenizer: Any) -> Any:
    """A random-weight causal LM of `config`'s shape, built directly on `device` in `dtype`
    (speed does not depend on weight values; 2.5B random weights initialised on CPU take minutes)."""
    config = copy.deepcopy(config)
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(0)
    with device:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def examples_for(shape: Shape, tokenizer: Any) -> list[RLExample]:
    """One prompt of exactly `shape.prompt_tokens` tokens per user (one word = one token)."""
    rng = random.Random(0)
    prompts = [" ".join(f"w{rng.randrange(PROMPT_WORDS)}" for _ in range(shape.prompt_tokens)) for _ in range(shape.users)]
    lengths = {len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]}
    if lengths != {shape.prompt_tokens}:
        raise RuntimeError(f"prompts tokenized to {sorted(lengths)} tokens, expected {shape.prompt_tokens}")
    return [RLExample(prompt, f"item{user}", []) for user, prompt in enumerate(prompts)]


def bench_ours(
    report: Report, policy: Any, tokenizer: Any, examples: list[RLExample], cfg: RLConfig,
    args: argparse.Namespace, budget: Budget, reserve_s: float,
) -> float:
    """Seconds per RebelTrainer.update, its split, and whether the decode step was compiled."""
    device = policy.device
    trainer = RebelTrainer(policy, tokenizer, HashReward(), cfg, seed=0)
    watch = Stopwatch(device)
    for target, method, label in (
        (trainer, "rollout", "generation"),
        (trainer, "_old_and_ref_logprobs", "log-prob passes (old + ref)"),
        (trainer, "_regress", "passes: forward/backward"),
        (trainer.optimizer, "step", "passes: optimizer steps"),
    ):
        time_method(report, watch, target, method, label)
    try:
        with _forced_length(policy, cfg.sampling.max_new_tokens):
            seconds = timed_updates(report, "ours", partial(trainer.update, examples), watch, args.ours_updates,
                                    warmups=1, budget=budget, reserve_s=reserve_s)
        weight_bytes = sum(p.numel() * p.element_size() for p in policy.parameters())
        report.line(f"ours rollout: decode step compiled: {_decode_compiled(policy)}; weights read per decode "
                    f"step (base + LoRA): {weight_bytes / 1e9:.2f} GB")
        if "generation" in watch.seconds:
            step_ms = 1000 * watch.seconds["generation"] / watch.counts["total"] / cfg.sampling.max_new_tokens
            report.line(f"ours rollout: {step_ms:.2f} ms per decode step (prefill included)")
        return seconds
    finally:
        del trainer
        free_memory(device)


def bench_reference(
    report: Report, policy: Any, tokenizer: Any, examples: list[RLExample], cfg: RLConfig,
    args: argparse.Namespace, budget: Budget, reserve_s: float,
) -> float:
    device = policy.device
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate)
    watch = Stopwatch(device)
    optimizer.step = watch.wrap("passes: optimizer steps", optimizer.step)
    update = functools.partial(
        _reference_update, policy=policy, tokenizer=tokenizer, examples=examples, cfg=cfg,
        optimizer=optimizer, watch=watch,
    )
    try:
        with _gradient_checkpointing_off(policy):
            if args.reference_warmup == "short":
                # Loads kernels and sizes the allocator without a full update's minutes.
                started = time.perf_counter()
                update(examples=examples[:1], new_tokens=min(8, cfg.sampling.max_new_tokens), passes=1)
                report.line(f"reference warm-up (short: 8 decode steps, one user's passes): {time.perf_counter() - started:.1f} s")
            warmups = 1 if args.reference_warmup == "full" else 0
            return timed_updates(report, "reference", update, watch, args.reference_updates, warmups=warmups,
                                 budget=budget, reserve_s=reserve_s)
    finally:
        del optimizer, update
        free_memory(device)


def time_method(report: Report, watch: Stopwatch, target: Any, method: str, label: str) -> None:
    """Time `target.method` under `label` by wrapping it on this instance only (RebelTrainer's
    private methods are timed from outside); a method the trainer no longer has is reported."""
    if not callable(getattr(target, method, None)):
        report.line(f"note: {type(target).__name__}.{method} not found, '{label}' is not timed separately")
        return
    setattr(target, method, watch.wrap(label, getattr(target, method)))


def timed_updates(
    report: Report, label: str, update: Callable[[], Any], watch: Stopwatch, count: int, warmups: int,
    budget: Budget | None = None, reserve_s: float = 0.0,
) -> float:
    """Mean seconds of `count` updates after `warmups` untimed ones; prints each and the split.

    With a `budget`, timed updates after the first stop once another one would leave less than
    `reserve_s` of it."""
    for warmup in range(warmups):
        started = time.perf_counter()
        update()
        report.line(f"{label} warm-up update {warmup + 1}: {time.perf_counter() - started:.1f} s (first call: includes compilation on CUDA)")
    if count < 1:
        raise ValueError(f"{label}: at least one timed update is needed, got {count}")
    watch.reset()
    total = 0.0
    seconds = 0.0
    for index in range(count):
        if index > 0 and budget is not None and budget.left() < seconds + reserve_s:
            report.line(f"{label}: stopped after {index} timed updates to stay within the budget")
            break
        with watch.section("total"):
            update()
        seconds = watch.seconds["total"] - total
        total = watch.seconds["total"]
        report.line(f"{label} update {index + 1}: {seconds:.1f} s")
    done = watch.counts["total"]
    mean = total / done
    parts = {name: value / done for name, value in watch.seconds.items() if name != "total"}
    # _regress's time includes its optimizer steps: report the forward/backward without them.
    if "passes: forward/backward" in parts and "passes: optimizer steps" in parts:
        parts["passes: forward/backward"] -= parts["passes: optimizer steps"]
    parts["other (not timed above: reward, bookkeeping)"] = mean - sum(parts.values())
    split = ", ".join(f"{name} {value:.1f} s ({100 * value / mean:.0f}%)" for name, value in parts.items())
    report.line(f"{label}: {mean:.1f} s per update = {split}")
    return mean


def _reference_update(
    policy: Any, tokenizer: Any, examples: Sequence[RLExample], cfg: RLConfig, optimizer: torch.optim.Optimizer,
    watch: Stopwatch, new_tokens: int | None = None, passes: int | None = None,
) -> None:
    """One update the way the reference code runs it (see the module docstring)."""
    device = policy.device
    new_tokens = new_tokens or cfg.sampling.max_new_tokens
    paired = [example.prompt for example in examples for _ in range(SAMPLES_PER_PROMPT)]
    batch = tokenizer(paired, padding=True, add_special_tokens=False, return_tensors="pt").to(device)
    prompt_width = batch["input_ids"].shape[1]
    settings = HFGenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0,
        top_p=1.0, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        cache_implementation="dynamic",
    )
    with watch.section("generation"), torch.no_grad():
        policy.eval()
        sequences = policy.generate(**batch, generation_config=settings)
    attention = torch.ones_like(sequences)
    attention[:, :prompt_width] = batch["attention_mask"]
    completion = torch.zeros_like(sequences)
    completion[:, prompt_width:] = 1
    users = [slice(SAMPLES_PER_PROMPT * user, SAMPLES_PER_PROMPT * (user + 1)) for user in range(len(examples))]

    def logprobs(rows: slice) -> torch.Tensor:
        return _full_vocab_logprobs(policy, sequences[rows], attention[rows], completion[rows])

    with watch.section("log-prob passes (old + ref)"), torch.no_grad():
        logp_old = torch.cat([logprobs(rows) for rows in users]).float().cpu()
        with policy.disable_adapter():
            logp_ref = torch.cat([logprobs(rows) for rows in users]).float().cpu()
    rewards = torch.tensor(HashReward()(paired, [str(row) for row in sequences[:, prompt_width:].tolist()],
                                        target_item_id=[], history_item_ids=[]))
    rewards = shape_and_whiten(rewards, logp_old, logp_ref, cfg.beta)
    policy.train()
    with watch.section("passes: forward/backward"):
        for _ in range(passes or cfg.algorithm.passes_per_batch):
            for user, rows in enumerate(users):
                logp_new = logprobs(rows).cpu()
                pair = slice(2 * user, 2 * user + 2)
                loss = rebel_loss(logp_new[0], logp_old[pair][0], logp_new[1], logp_old[pair][1],
                                  rewards[pair][0], rewards[pair][1], cfg.algorithm.eta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    policy.eval()


def _full_vocab_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         completion_mask: torch.Tensor) -> torch.Tensor:
    """The reference's sequence log-probs: logits at every position, a float32 log-softmax over the
    whole vocabulary, then the chosen tokens' values summed over the completion."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (token_logprobs * completion_mask[:, 1:]).sum(dim=1)


@dataclass(frozen=True)
class BulkFigures:
    """Bulk generation's measured decode step (prefill included) and the weight-streaming floor."""

    tokens_per_s: float
    step_ms: float
    floor_ms: float


def bench_bulk(report: Report, policy: Any, tokenizer: Any, shape: Shape, bandwidth: float,
               device: torch.device, dtype: torch.dtype) -> BulkFigures:
    """Tokens/s of TransformersGenerator on the merged policy against the weight-streaming floor.
    Merging unloads the LoRA: the policy is a plain model afterwards."""
    model = policy.merge_and_unload().eval()
    free_memory(device)
    rng = random.Random(1)
    prompts = [" ".join(f"w{rng.randrange(PROMPT_WORDS)}" for _ in range(shape.prompt_tokens)) for _ in range(shape.bulk_batch)]
    settings = GenerationConfig(max_new_tokens=shape.new_tokens, do_sample=True, batch_size=shape.bulk_batch)
    generator = TransformersGenerator(model, tokenizer, settings, model_id="bench", min_new_tokens=shape.new_tokens)
    cache = "static, compiled decode" if device.type == "cuda" else "dynamic"
    for run in ("first (compiles on CUDA)", "timed"):
        _sync(device)
        started = time.perf_counter()
        profiles = generator.generate(prompts)
        _sync(device)
        seconds = time.perf_counter() - started
        report.line(f"bulk generation {run}: {seconds:.1f} s")
    tokens = sum(profile.num_tokens for profile in profiles)
    if tokens != shape.bulk_batch * shape.new_tokens:
        raise RuntimeError(f"bulk generation decoded {tokens} tokens, not {shape.bulk_batch} x {shape.new_tokens}")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_bytes = _kv_cache_bytes(model.config, shape.bulk_batch, shape.prompt_tokens + shape.new_tokens, dtype)
    # The copy's rate counts bytes read + written: the memory's total throughput, which a decode
    # step spends reading weights and cache.
    floor_ms = 1000 * (weight_bytes + kv_bytes) / bandwidth
    step_ms = 1000 * seconds / shape.new_tokens
    report.line(
        f"bulk generation ({cache}, batch {shape.bulk_batch} x {shape.prompt_tokens} prompt tokens, "
        f"{shape.new_tokens} new): {tokens / seconds:.0f} tokens/s, {step_ms:.2f} ms per decode step "
        f"(prefill included)"
    )
    report.line(
        f"weight-streaming floor: {weight_bytes / 1e9:.2f} GB weights + {kv_bytes / 1e9:.2f} GB KV cache (full "
        f"static length) per step at {bandwidth / 1e9:.0f} GB/s = {floor_ms:.2f} ms per step; "
        f"measured/floor = {step_ms / floor_ms:.1f}x, i.e. {step_ms - floor_ms:.2f} ms per step above it"
    )
    return BulkFigures(tokens / seconds, step_ms, floor_ms)


def _kv_cache_bytes(config: PretrainedConfig, batch: int, length: int, dtype: torch.dtype) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim  # keys and values
    return batch * length * per_token * torch.tensor([], dtype=dtype).element_size()


def copy_bandwidth(device: torch.device, size_bytes: int = 2**30, repeats: int = 10) -> float:
    """Bytes read + written per second by a device-to-device copy of `size_bytes` (mean of repeats)."""
    source = torch.empty(size_bytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    _sync(device)
    seconds = (time.perf_counter() - started) / repeats
    del source, target
    return 2 * size_bytes / seconds


def parameter_summary(policy: Any) -> str:
    trainable = [p for p in policy.parameters() if p.requires_grad]
    frozen = [p for p in policy.parameters() if not p.requires_grad]
    adapter_dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in trainable})
    return (f"{sum(p.numel() for p in frozen) / 1e9:.2f}B frozen ({frozen[0].dtype}), "
            f"{sum(p.numel() for p in trainable) / 1e9:.3f}B LoRA ({', '.join(adapter_dtypes)})")


@contextlib.contextmanager
def _forced_length(policy: Any, forced_tokens: int) -> Iterator[None]:
    """A fixed profile length, as the reference decodes (EOS disabled), through the model's
    generation defaults, which transformers consults for what RebelTrainer's config leaves unset."""
    defaults = policy.generation_config
    saved = defaults.min_new_tokens
    defaults.min_new_tokens = forced_tokens
    try:
        yield
    finally:
        defaults.min_new_tokens = saved


@contextlib.contextmanager
def _gradient_checkpointing_off(policy: Any) -> Iterator[None]:
    """The reference does not checkpoint; restore the policy's setting afterwards."""
    base = policy.get_base_model()
    was_on = base.is_gradient_checkpointing
    if was_on:
        base.gradient_checkpointing_disable()
    try:
        yield
    finally:
        if was_on:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _decode_compiled(policy: Any) -> str:
    # transformers keeps the compiled forward it generated with on the model (diagnostic only).
    return "yes" if hasattr(policy.get_base_model(), "_compiled_call") else "no"


def guarded(report: Report, budget: Budget, name: str, needs_s: float, run: Callable[[], Any]) -> Any:
    """run(), or None with a line saying why: too little of the time budget left, out of GPU
    memory, or another error (one GPU run should still measure the other sections)."""
    if budget.left() < needs_s:
        report.line(f"{name}: SKIPPED, {budget.left():.0f} s of the {budget.seconds:.0f} s budget left, "
                    f"it needs about {needs_s:.0f} s")
        return None
    report.line(f"== {name} (at {budget.elapsed():.0f} s)")
    try:
        return run()
    except torch.OutOfMemoryError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "out of memory"
        report.line(f"{name}: OUT OF MEMORY ({first_line}); section skipped")
    except Exception as exc:  # noqa: BLE001  reported, so the remaining sections still run
        report.line(f"{name}: FAILED, section skipped: {type(exc).__name__}: {exc}")
        report.line("".join(traceback.format_exception(exc)[-6:]).rstrip())
    free_memory(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
