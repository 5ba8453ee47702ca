"""`pytest --benchmark` collects only tests/benchmarks; plain pytest never collects them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collect(*args):
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [l for l in out.stdout.splitlines() if "::" in l]


def test_benchmark_flag_selects_only_benchmarks():
    bench = _collect("--benchmark")
    assert bench and all(l.startswith("tests/benchmarks/") for l in bench)
    assert any("test_reference_forward_backward" in l for l in bench)


def test_plain_run_skips_benchmarks():
    normal = _collect("tests/test_templates.py", "tests/benchmarks")
    assert normal and not any(l.startswith("tests/benchmarks/") for l in normal)
