"""The learning tests' margins, measured: each trainer's gain on its fixed set over several seeds,
with its update intact and broken (tests/training/test_learning.py).

A learning test asserts gain > margin at one seed. The margin is sound when it sits below every
intact gain and above every broken one across seeds: another seed stands in for another machine,
whose float32 kernels (AVX2 or AVX-512) round differently and so sample a different trajectory.
Prints and writes bench/results/learning_margins.md.

    python bench/studies/learning_margins.py [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "tests" / part) for part in ("", "training")]

import test_learning as learning  # noqa: E402  (the tests' own setups, not a copy)
from sentence_transformers import SentenceTransformer  # noqa: E402
from tiny_encoder import build_tiny_encoder  # noqa: E402
from tiny_lm import build_tiny_lm  # noqa: E402

from lpt_core.retrieval import TextEncoder  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "learning_margins.md"
WRITERS = ("rebel", "grpo", "rloo", "best_of_n")


def gains(trainer: str, seed: int, broken: bool, lm: Path, encoder_folder: Path, scratch: Path) -> float:
    if trainer in WRITERS:
        encoder = TextEncoder(SentenceTransformer(str(encoder_folder), device="cpu"))
        return learning.writer_gain(trainer, lm, encoder, seed, scratch, broken).gain
    if trainer == "contrastive":
        return learning.contrastive_gain(encoder_folder, seed, broken).gain
    encoder = TextEncoder(SentenceTransformer(str(encoder_folder), device="cpu"))
    return learning.item_head_gain(encoder, seed, broken).gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)  # as the tests run (tests/training/conftest.py one_thread)
    margins = {**learning.WRITER_MARGIN, **learning.RECOMMENDER_MARGIN}
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        lm, encoder_folder = build_tiny_lm(scratch / "lm"), build_tiny_encoder(scratch / "encoder")
        for trainer in margins:
            started = time.perf_counter()
            intact = [gains(trainer, s, False, lm, encoder_folder, scratch / "out") for s in seeds]
            broken = [gains(trainer, s, True, lm, encoder_folder, scratch / "out") for s in seeds]
            seconds = (time.perf_counter() - started) / (2 * len(seeds))
            rows.append((trainer, intact, broken, margins[trainer], seconds))
            print(f"{trainer}: intact {intact}, broken {broken}, {seconds:.1f} s per run", flush=True)
    write_table(rows, seeds)


def write_table(rows: list, seeds: list[int]) -> None:
    bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    lines = [
        "# Learning tests: gains over seeds, update intact and broken",
        "",
        f"`python bench/studies/learning_margins.py --seeds {','.join(map(str, seeds))}` on {platform.processor() or platform.machine()}"
        f" ({'AVX-512 bf16' if bf16 else 'no native bf16'}), torch {torch.__version__}, float32 forced, one thread.",
        "Gain = the fixed set's metric after training minus before (writers: mean greedy reward, NDCG of",
        "\"musical\" over the 30-word catalogue; recommenders: mean NDCG of the 16 profiles' targets).",
        "Broken = trained on the negated reward (writers) or the negated loss (recommenders).",
        "",
        "| trainer | margin | intact gains | smallest intact | broken gains | largest broken | s per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for trainer, intact, broken, margin, seconds in rows:
        verdict = "" if min(intact) > margin > max(broken) else " **margin not separating**"
        lines.append(
            f"| {trainer} | {margin}{verdict} | {', '.join(f'{g:+.3f}' for g in intact)} | {min(intact):+.3f} | "
            f"{', '.join(f'{g:+.3f}' for g in broken)} | {max(broken):+.3f} | {seconds:.1f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
