"""bench/ stays readable: every script is in its index, and every path to a bench script that the
docs, the Makefile, the configs, the code or the scripts themselves name exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SCRIPT_PATH = re.compile(r"bench/[\w/]+\.py")


def _texts_naming_bench_scripts() -> list[Path]:
    # Result files are records of past runs: they keep the paths their commands had then.
    kept = [REPO / "README.md", REPO / "Makefile", BENCH / "README.md", *(REPO / "docs").glob("*.md")]
    for folder in ("lpt_core", "lpt_dagster", "tests", "configs", "bench/speed", "bench/studies"):
        kept += [path for path in (REPO / folder).rglob("*") if path.suffix in (".py", ".yaml", ".md")]
    return kept


def test_every_bench_script_is_in_the_index():
    index = (BENCH / "README.md").read_text(encoding="utf-8")
    scripts = sorted((BENCH / "speed").glob("*.py")) + sorted((BENCH / "studies").glob("*.py"))
    assert scripts, "no scripts under bench/speed or bench/studies"
    missing = [str(path.relative_to(BENCH)) for path in scripts if f"`{path.name}`" not in index]
    assert not missing, f"bench scripts missing from bench/README.md: {missing}"


def test_no_bench_script_sits_outside_speed_and_studies():
    assert not list(BENCH.glob("*.py")), "a bench script belongs in bench/speed/ or bench/studies/"


def test_every_named_bench_script_exists():
    named = {
        (path.relative_to(REPO), match)
        for path in _texts_naming_bench_scripts()
        for match in SCRIPT_PATH.findall(path.read_text(encoding="utf-8"))
    }
    assert named, "nothing names a bench script: the pattern is wrong"
    broken = sorted((str(where), script) for where, script in named if not (REPO / script).is_file())
    assert not broken, f"paths to bench scripts that do not exist: {broken}"


def test_make_bench_runs_scripts_that_exist():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    names = re.search(r"^SPEED_BENCHES = (.+)$", makefile, re.MULTILINE).group(1).split()
    assert "bench/speed/$$name.py" in makefile
    assert [name for name in names if not (BENCH / "speed" / f"{name}.py").is_file()] == []
