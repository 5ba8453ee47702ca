"""The runtime runs alone: under make test-runtime (ECLOSS_RUNTIME_INSTALLED=1) torch is not
installed and ``export`` is the installed package, not the repository's; and `python -m
export` (the runtime package) points to the commands instead of exporting."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import export


def test_installed_runtime_has_no_torch_and_comes_from_site_packages(runtime_installed):
    if not runtime_installed:
        pytest.skip("only in the runtime-only venv (make test-runtime)")
    assert importlib.util.find_spec("torch") is None
    location = Path(export.__file__).resolve()
    assert "site-packages" in location.parts, location
    assert not (location.parents[1] / "tests" / "runtime").is_dir()   # not a checkout
    for name in ("torch", "torchvision", "zoo"):
        assert name not in sys.modules, name
    # the lab and the maintenance scripts are never installed
    assert importlib.util.find_spec("research") is None
    assert importlib.util.find_spec("tools") is None


def test_installed_zoo_says_it_needs_torch(runtime_installed):
    if not runtime_installed:
        pytest.skip("only in the runtime-only venv (make test-runtime)")
    with pytest.raises(ImportError, match=r"zoo needs torch.*\[torch\]"):
        import zoo  # noqa: F401


def test_python_m_export_points_to_the_commands(runtime_env):
    r = subprocess.run([sys.executable, "-m", "export"], capture_output=True, text=True,
                       env=runtime_env, timeout=60)
    assert r.returncode == 2
    assert "python -m zoo.exporting MODEL --out DIR" in r.stderr
    assert "python -m export.runtime verify" in r.stderr and "python -m export.app" in r.stderr


def test_installed_console_command(runtime_installed):
    """The runtime install puts the `ecloss` command beside its python (setup.py's
    console_scripts), and it needs no torch."""
    if not runtime_installed:
        pytest.skip("only in the runtime-only venv (make test-runtime)")
    ecloss = Path(sys.executable).parent / "ecloss"
    assert ecloss.is_file(), ecloss
    r = subprocess.run([str(ecloss), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("verify", "explain", "embed", "verify-pairs", "search"):
        assert command in r.stdout
