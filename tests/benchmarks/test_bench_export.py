"""ONNX Runtime (CPU) vs PyTorch eager: embedding throughput of the CPU-preset model shape.

Run with `pytest --benchmark`. The model is the CPU preset's shape (VGG19+BN, width 0.25, 112 px,
512-d embedding; random weights: speed does not depend on them), exported by export_model. Each
test times ORT and eager *interleaved* in the same run (rounds alternate which goes first), so
load from other processes on the shared machine hits both alike; the ratio uses the fastest
round of each (the least disturbed), and benchmark.extra_info records it with the medians.
Both sides run the same model: embedding.onnx exported with --flip-tta (the image and its
mirror) or in one view (the default since the faithful-explanations issue), against
zoo.exporting.graphs.EmbeddingModel in torch.inference_mode.
Results: docs/performance.md, "ONNX Runtime vs PyTorch eager".
"""
import os
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch

import zoo
from zoo.exporting.graphs import EmbeddingModel
from zoo.exporting.model_export import export_model

THREADS = os.cpu_count() or 1
ROUNDS = 7
TARGET = 1.3  # ORT speed-up over eager the issue asks for (reported, not asserted: timings swing)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_export")
    torch.manual_seed(0)
    net = zoo.create("vgg19-ecloss", width=0.25, input_size=112, batch_norm=True,
                     name="bench-vgg19")
    folder = zoo.save(net, root=tmp)
    out = {}
    for flip in (True, False):
        d = tmp / f"out_flip{int(flip)}"
        export_model(folder, d, flip=flip, featuremap=False, torchscript=False, log=None)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = THREADS
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(d / "embedding.onnx"), so,
                                    providers=["CPUExecutionProvider"])
        out[flip] = (sess, EmbeddingModel(zoo.load(folder), flip=flip).eval(),
                     str(d / "embedding.onnx"))
    return out


def _time(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "noflip"])
@pytest.mark.parametrize("batch", [1, 16])
def test_ort_vs_eager_embedding(benchmark, models, batch, flip):
    sess, eager, _ = models[flip]
    torch.set_num_threads(THREADS)
    x = (np.random.default_rng(batch).random((batch, 3, 112, 112), dtype=np.float32) * 2 - 1)
    xt = torch.from_numpy(x)

    def run_ort():
        return sess.run(["embeddings"], {"images": x})[0]

    def run_eager():
        with torch.inference_mode():
            return eager(xt)

    np.testing.assert_allclose(run_ort(), run_eager().numpy(), atol=1e-4)  # same model
    run_ort(), run_eager()  # warm-up
    n = 10 if batch == 1 else 2
    t_ort, t_eager = [], []
    for r in range(ROUNDS):
        pair = [(run_ort, t_ort), (run_eager, t_eager)]
        for fn, acc in (pair if r % 2 == 0 else pair[::-1]):
            acc.append(_time(fn, n))
    best = min(t_eager) / min(t_ort)
    med = float(np.median(t_eager) / np.median(t_ort))
    benchmark.group = f"embedding VGG19+BN w0.25 112px, batch {batch}"
    benchmark.extra_info.update({
        "batch": batch, "flip_tta": flip, "threads": THREADS,
        "ort_ms_best": min(t_ort) * 1e3, "eager_ms_best": min(t_eager) * 1e3,
        "ort_img_per_s": batch / min(t_ort), "eager_img_per_s": batch / min(t_eager),
        "ratio_best": best, "ratio_median": med, "target": TARGET})
    print(f"\nbatch {batch} flip={flip}: ORT {min(t_ort) * 1e3:.2f} ms, eager "
          f"{min(t_eager) * 1e3:.2f} ms -> ORT {best:.2f}x eager (median ratio {med:.2f})")
    benchmark.pedantic(run_ort, rounds=ROUNDS, iterations=n, warmup_rounds=1)


@pytest.mark.parametrize("batch", [1, 16])
def test_eager_embedding(benchmark, models, batch):
    """Eager alone, so pytest-benchmark's table shows both sides of each group."""
    _, eager, _ = models[True]
    torch.set_num_threads(THREADS)
    xt = torch.rand(batch, 3, 112, 112) * 2 - 1
    benchmark.group = f"embedding VGG19+BN w0.25 112px, batch {batch}"

    def run():
        with torch.inference_mode():
            return eager(xt)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=10 if batch == 1 else 2, warmup_rounds=1)


@pytest.mark.parametrize("batch", [1, 16])
def test_graph_optimisation_levels(benchmark, models, batch):
    """Which ORT setting earns the speed-up: BASIC / EXTENDED / ALL (ALL adds the NCHWc layout
    transforms), the flip-TTA model, threads = cores, interleaved; ratios to eager in extra_info."""
    _, eager, path = models[True]
    x = (np.random.default_rng(batch).random((batch, 3, 112, 112), dtype=np.float32) * 2 - 1)
    xt = torch.from_numpy(x)
    torch.set_num_threads(THREADS)
    fns = {}
    for lvl in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, lvl)
        so.intra_op_num_threads = THREADS
        so.log_severity_level = 3
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        fns[lvl] = (lambda s=s: s.run(["embeddings"], {"images": x}))

    def run_eager():
        with torch.inference_mode():
            return eager(xt)

    fns["eager"] = run_eager
    for f in fns.values():
        f()
    n = 10 if batch == 1 else 2
    times = {k: [] for k in fns}
    items = list(fns.items())
    for r in range(ROUNDS):
        for k, f in (items if r % 2 == 0 else items[::-1]):
            times[k].append(_time(f, n))
    e = min(times["eager"])
    benchmark.group = f"ORT graph optimisation level, batch {batch}"
    benchmark.extra_info.update({f"{k}_ms_best": min(v) * 1e3 for k, v in times.items()})
    benchmark.extra_info.update({f"{k}_ratio_best": e / min(v) for k, v in times.items()
                                 if k != "eager"})
    print(f"\nbatch {batch}: eager {e * 1e3:.2f} ms; " + "; ".join(
        f"{k} {min(v) * 1e3:.2f} ms ({e / min(v):.2f}x)" for k, v in times.items()
        if k != "eager"))
    benchmark.pedantic(fns["ORT_ENABLE_ALL"], rounds=3, iterations=n)
