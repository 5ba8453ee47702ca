"""An explained match (verify(explain=True)) against a plain verify, at the demo model's shape.

Run with `pytest --benchmark`. The model is the CPU preset's shape (VGG19+BN, width 0.25, 112 px;
random weights and a channel table of the right size: speed does not depend on them), exported
by export_model with its detector and head, as exports are by default (one view) and with flip
TTA (--flip-tta: every network pass doubled). Per estimator (kernel: the default, pairwise, exact)
the explained verify and the plain verify are timed interleaved in the same run (rounds
alternate which goes first), so load from other processes hits both alike; the ratio uses the
fastest round of each. benchmark.extra_info records the seconds per pair, the ratio and the
1 s target of the faithful-explanations issue (reported, not asserted: timings swing with load).
Results: docs/performance.md, "Explaining a match".
"""
import json
import os
import time

import numpy as np
import pytest
import torch

import zoo
from export.verifier import FaceVerifier
from zoo.data.orl import orl_root
from zoo.exporting.model_export import export_model

THREADS = os.cpu_count() or 1
ROUNDS = 5
TARGET_S = 1.0


@pytest.fixture(scope="module", params=[False, True], ids=["one-view", "flip-tta"])
def model_dir(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("bench_match")
    torch.manual_seed(0)
    net = zoo.create("vgg19-ecloss", width=0.25, input_size=112, batch_norm=True,
                     name="bench-vgg19")
    folder = zoo.save(net, root=tmp)
    channels = net.zoo_config["feature_channels"]
    rng = np.random.default_rng(0)
    table = {"part_names": ["hair", "forehead", "cheek", "eyes", "nose", "mouth", "jaw"],
             "channel_part": rng.integers(-1, 7, channels).tolist(),
             "channel_iou": rng.uniform(0, 0.3, channels).tolist()}
    (folder / "channel_parts.json").write_text(json.dumps(table))
    out = tmp / "out"
    export_model(folder, out, torchscript=False, flip=request.param, log=None)
    return out


def _best_time(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


@pytest.mark.parametrize("estimator", ["kernel", "pairwise", "exact"])
def test_explained_match_vs_plain_verify(benchmark, model_dir, estimator):
    a, b = orl_root() / "s6" / "1.pgm", orl_root() / "s8" / "1.pgm"
    v = FaceVerifier(model_dir, device="cpu", threads=THREADS, estimator=estimator,
                     threshold=0.5)
    views = "flip-tta" if v.metadata["flip_tta"] == "true" else "one-view"
    if views == "flip-tta" and estimator != "kernel":
        pytest.skip("flip TTA is timed with the default estimator only (its cost is 2x)")
    ev = v.verify(a, b, explain=True).evidence          # warm-up (opens the explainer)
    assert sum(p.difference for p in ev.parts) + ev.other == pytest.approx(1 - ev.similarity,
                                                                           abs=1e-6)
    v.verify(a, b)
    rounds = 2 if estimator == "exact" else ROUNDS
    t_explain, t_plain = [], []
    for r in range(rounds):
        pair = [(lambda: v.verify(a, b, explain=True), t_explain), (lambda: v.verify(a, b),
                                                                     t_plain)]
        for fn, acc in (pair if r % 2 == 0 else pair[::-1]):
            acc.append(_best_time(fn, 1)[0])
    ratio = min(t_explain) / min(t_plain)
    benchmark.group = "explain a match, VGG19+BN w0.25 112px"
    benchmark.extra_info.update({
        "estimator": estimator, "views": views, "threads": THREADS,
        "explain_s_best": min(t_explain),
        "explain_s_median": float(np.median(t_explain)), "verify_s_best": min(t_plain),
        "ratio_best": ratio, "target_s": TARGET_S})
    print(f"\n{estimator}, {views}: explained match {min(t_explain):.3f} s (median "
          f"{np.median(t_explain):.3f}), plain verify {min(t_plain) * 1e3:.1f} ms -> {ratio:.1f}x")
    benchmark.pedantic(lambda: v.verify(a, b, explain=True), rounds=1 if estimator == "exact"
                       else 3, iterations=1)
