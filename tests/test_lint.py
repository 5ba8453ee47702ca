"""The code passes ruff with the project's ruff.toml (`make lint` runs the same check).

ruff is pinned in requirements.txt; without it (a bare install of the package) the test skips.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["research", "zoo", "export", "tests", "tools", "conftest.py", "setup.py"]


def test_ruff_check_is_clean():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -r requirements.txt)")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                          "--output-format", "concise", *TARGETS],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"ruff check found violations:\n{out.stdout}{out.stderr}"


def test_make_lint_checks_the_same_paths():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^lint:.*\n\t(.*)$", makefile, re.M)
    assert recipe, "Makefile has no lint target"
    assert recipe.group(1).split()[-len(TARGETS):] == TARGETS, recipe.group(1)
    assert (ROOT / "ruff.toml").is_file()
