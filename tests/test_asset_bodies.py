"""No asset body grows long again (issue 30.1): an asset is its inputs, one lpt_core call, one
recorder of lpt_dagster/recording and its value, as .ci/longest_functions.py measures it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The longest an asset body may be (decorators to last line): a signature, a docstring, the
# library call, the recorder and the value leave no room for inline assembly or logging.
MAX_ASSET_LINES = 50


def test_every_asset_body_is_short():
    measured = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "longest_functions.py"), str(ROOT / "lpt_dagster" / "assets"), "--top", "3"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    longest = int(measured[0].split()[0])
    assert longest <= MAX_ASSET_LINES, measured
