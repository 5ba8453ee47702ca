"""Project-wide pytest setup.

`pytest --benchmark` is the user's command for the benchmarks. pytest-benchmark has no such flag,
so it is defined here: with it, only tests under tests/benchmarks/ are collected and run (with
pytest-benchmark's fixture); without it, they are deselected and the normal suite runs.
"""
import os

BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests", "benchmarks")


def pytest_addoption(parser):
    parser.addoption("--benchmark", action="store_true", default=False,
                     help="run only the benchmarks in tests/benchmarks (pytest-benchmark)")


def _is_benchmark(item):
    return os.path.abspath(str(item.fspath)).startswith(BENCH_DIR + os.sep)


def pytest_collection_modifyitems(config, items):
    want_bench = config.getoption("--benchmark")
    keep, drop = [], []
    for item in items:
        (keep if _is_benchmark(item) == want_bench else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
