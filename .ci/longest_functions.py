#!/usr/bin/env python3
"""The longest functions under the given folders or files, by line count (decorators through the
last line of the body), longest first: a measure of how much an asset body does itself.

    python .ci/longest_functions.py lpt_dagster/assets              # the asset bodies
    python .ci/longest_functions.py lpt_core lpt_dagster --top 6     # the longest outside bench/
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def function_lengths(path: Path) -> list[tuple[int, str]]:
    """(lines, "file:name") of every function and method defined in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1, f"{path}:{node.name}")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    lengths = sorted((entry for f in files for entry in function_lengths(f)), reverse=True)
    for lines, name in lengths[: args.top]:
        print(f"{lines:5d}  {name}")


if __name__ == "__main__":
    main()
