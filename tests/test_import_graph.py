"""Imports inside lpt_core run one way: no module reaches itself through other modules' imports.

Every `import lpt_core...` counts, at the top of a file or inside a function (a lazy import is
still a dependency); imports under `if TYPE_CHECKING:` do not (they never run). lpt_core never
imports dagster (lpt_dagster is the thin layer on top).
"""

from __future__ import annotations

import ast
from pathlib import Path

from blocked_imports import ABSENT_ON_THE_GPU_MACHINE, run_without

import lpt_core

ROOT = Path(lpt_core.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        imported = _imported(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py")
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_lpt_core_has_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_lpt_core_never_imports_dagster():
    for path in ROOT.rglob("*.py"):
        imported = _imported(ast.parse(path.read_text(encoding="utf-8")), _module_name(path), False)
        assert not any(name.split(".")[0] == "dagster" for name in imported), path


# The modules a GPU check runs on a bare GPU machine (tests/blocked_imports.py says what it lacks).
GPU_SIDE_MODULES = (
    "lpt_core.models", "lpt_core.generation.hf_backend", "lpt_core.generation.vllm_backend",
    "lpt_core.training.policy", "lpt_core.training.rebel", "lpt_core.training.rl",
    "lpt_core.training.best_of_n", "lpt_core.training.trl_trainers",
)
# bench/speed/gpu_check.py (`make gpu-check`) and what it imports, also inside its functions: its
# machinery (bench/speed/paper_scale.py) and the GRPO runner with TRL.
GPU_CHECK_MODULES = (
    "gpu_check", "paper_scale", "lpt_core.training.algorithms.grpo", "lpt_core.training.algorithms.trl_runner",
    "trl", "datasets",
)
BENCH = ROOT.parent / "bench" / "speed"


def _import_without_the_packages_a_gpu_machine_lacks(modules: tuple[str, ...]) -> None:
    # A fresh interpreter: this test process has long imported all of them.
    code = f"import importlib, sys\nsys.path.insert(0, {str(BENCH)!r})\nfor module in {modules!r}: importlib.import_module(module)\n"
    result = run_without(ABSENT_ON_THE_GPU_MACHINE, code)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


def test_the_trainers_and_generators_import_without_the_packages_a_gpu_machine_lacks():
    _import_without_the_packages_a_gpu_machine_lacks(GPU_SIDE_MODULES)


def test_the_gpu_check_imports_without_the_packages_a_gpu_machine_lacks():
    _import_without_the_packages_a_gpu_machine_lacks(GPU_CHECK_MODULES)


def test_a_blocked_package_cannot_be_imported():
    result = run_without(("json",), "import json\n")
    assert "ModuleNotFoundError" in result.stderr
