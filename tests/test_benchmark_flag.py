"""`pytest --benchmark` collects only tests/benchmarks; plain pytest never collects them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collect(*args):
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_benchmark_flag_selects_only_benchmarks():
    bench = _collect("--benchmark")
    assert bench and all(test.startswith("tests/benchmarks/") for test in bench)
    assert any("test_reference_forward_backward" in test for test in bench)


def test_plain_run_skips_benchmarks():
    normal = _collect("tests/test_templates.py", "tests/benchmarks")
    assert normal and not any(test.startswith("tests/benchmarks/") for test in normal)
