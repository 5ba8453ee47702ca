"""explain with the runtime alone: the API (export.explainer) writes the overlay picture and
names the channels; `python -m export.runtime explain` writes it and prints the channel
table."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from export.explainer import FaceExplainer, overlay_size


def _cli(env, *args):
    r = subprocess.run([sys.executable, "-m", "export.runtime", "explain", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def explainer(runtime_data):
    return FaceExplainer(runtime_data.model, device="cpu")


def test_explain_writes_the_overlay_and_names_the_channels(runtime_data, explainer, tmp_path):
    face, _ = runtime_data.same_pair()
    x = explainer.explain(face, top_k=8, out=tmp_path / "heat.png")
    n = int(explainer.metadata["feature_channels"])
    size = explainer.input_size
    assert x.heatmaps.shape == x.masks.shape == (n, size, size) and x.masks.dtype == bool
    assert 0.05 < x.masks.mean() < 0.2                    # the top-10% regions
    assert np.all(x.heatmaps[~x.masks] == 0)
    assert 1 <= len(x.channels) <= 8
    peaks = x.feature_maps.reshape(n, -1).max(1)
    for c in x.channels:
        assert c.peak == pytest.approx(float(peaks[c.channel])) and c.peak > 0
        assert c.part is None or c.part in x.part_names
        assert 0 <= c.iou <= 1
    assert explainer.parts is not None                    # the fixture carries its table
    with Image.open(tmp_path / "heat.png") as im:
        assert im.format == "PNG" and im.size == overlay_size(len(x.channels))


def test_explain_cli_prints_the_table(runtime_data, runtime_env, explainer, tmp_path):
    face, _ = runtime_data.same_pair()
    code, out, err = _cli(runtime_env, face, "--model", runtime_data.model, "--out",
                          tmp_path / "cli.png", "--top-k", "3", "--device", "cpu")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"wrote {tmp_path / 'cli.png'} (320x360)"
    assert "part labels: where each channel fires on this face" in out
    want = explainer.explain(face, top_k=3).channels
    rows = [line for line in lines if line.strip().startswith("channel ")]
    assert [int(r.split()[1]) for r in rows] == [c.channel for c in want]
    with Image.open(tmp_path / "cli.png") as im:
        assert im.size == (320, 360)
    code, out, err = _cli(runtime_env, face, "--model", runtime_data.model, "--out",
                          tmp_path / "cli.webp", "--top-k", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [c["channel"] for c in res["channels"]] == [c.channel for c in want[:2]]
    with Image.open(tmp_path / "cli.webp") as im:
        assert im.format == "WEBP" and list(im.size) == res["size"]


def test_explain_cli_refuses_a_bad_output_name(runtime_data, runtime_env, tmp_path):
    face, _ = runtime_data.same_pair()
    code, _, err = _cli(runtime_env, face, "--model", runtime_data.model, "--out",
                        tmp_path / "heat.gif")
    assert code == 2 and "unknown overlay extension" in err
    assert not (tmp_path / "heat.gif").exists()
