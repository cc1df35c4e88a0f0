"""bench/speed/gpu_check.py (`make gpu-check`): its dry run reaches every stage on the CPU, with the
packages the GPU machine lacks blocked, and writes the table; the table says which goals were met."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from blocked_imports import ABSENT_ON_THE_GPU_MACHINE, run_without

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "speed"))

import gpu_check  # noqa: E402  bench/speed/, not a package

STAGES = ("model", "REBEL update, ours", "REBEL update, reference-style loop", "TRL GRPO step", "bulk generation")


def test_the_dry_run_reaches_every_stage_and_writes_the_table(tmp_path):
    table = tmp_path / "gpu_check.md"
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO / 'bench' / 'speed')!r})\nimport gpu_check\n"
        f"sys.exit(gpu_check.main(['--dry-run', '--out', {str(table)!r}]))\n"
    )

    result = run_without(ABSENT_ON_THE_GPU_MACHINE, code, cwd=REPO, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "-- prerequisites: done" in result.stdout
    for stage in STAGES:
        assert f"== {stage} (at " in result.stdout
        assert f"-- {stage}: done in " in result.stdout, result.stdout[-3000:]
    written = table.read_text(encoding="utf-8")
    assert "not measured" not in written
    assert written.count("\n| ") == 7  # the header row, the rule and the five checks
    assert "| TRL GRPO, one step" in written and "| runs | yes |" in written
    assert written.count("| dry run |") == 2  # a tiny shape on the CPU meets or misses no goal


def test_the_table_marks_each_goal_met_or_not(tmp_path):
    out = tmp_path / "table.md"
    bulk = SimpleNamespace(tokens_per_s=8527.0, step_ms=15.01, floor_ms=2.05)
    figures = gpu_check.Figures(speedup_goal=10.0, reference_s=83.4, ours_s=18.6, bulk=bulk)

    gpu_check._write_table(figures, out)

    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.read_text(encoding="utf-8").splitlines()}
    assert rows["REBEL update, ours (lpt_core's RebelTrainer)"].endswith("4.5x faster | 10x faster than the reference-style loop | no |")
    assert rows["bulk generation, decode step (prefill included)"].endswith("| 7 ms | no |")
    assert rows["TRL GRPO, one step (GRPOTrainer through lpt_core.training.rl)"].endswith("| not measured | runs | no |")

    gpu_check._write_table(gpu_check.Figures(speedup_goal=4.0, reference_s=83.4, ours_s=18.6), out)

    assert "4.5x faster | 4x faster than the reference-style loop | yes |" in out.read_text(encoding="utf-8")


def _check(arguments: list[str], blocked: tuple[str, ...]):
    code = f"import sys\nsys.path.insert(0, {str(REPO / 'bench' / 'speed')!r})\nimport gpu_check\nsys.exit(gpu_check.main({arguments!r}))\n"
    return run_without(blocked, code, cwd=REPO, timeout=60)


def test_a_missing_package_stops_the_check_before_any_stage():
    result = _check(["--dry-run"], blocked=("trl",))

    assert result.returncode == 2
    assert "missing packages trl" in result.stdout and "make gpu-check-wheels" in result.stdout
    assert "== model" not in result.stdout


def test_without_cuda_the_check_stops_before_any_stage():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")

    result = _check([], blocked=())

    assert result.returncode == 2
    assert "prerequisites: CUDA is not available" in result.stdout
    assert "== model" not in result.stdout


def test_the_carried_packages_requirements_that_the_machine_does_not_meet_are_named(tmp_path, monkeypatch):
    info = tmp_path / "carried_example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: carried-example\nVersion: 1.0\n"
        "Requires-Dist: numpy<1\nRequires-Dist: numpy>=1\nRequires-Dist: no-such-package-here\n"
        'Requires-Dist: no-such-test-tool; extra == "test"\n',
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    unmet = gpu_check._unmet_requirements(("carried-example",))

    assert len(unmet) == 2
    assert unmet[0].startswith("carried-example needs numpy<1, numpy ") and unmet[0].endswith(" is installed")
    assert unmet[1] == "carried-example needs no-such-package-here, not installed"
