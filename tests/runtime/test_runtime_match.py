"""verify --explain with the runtime alone: the match evidence (each part's share of
1 - similarity from hiding it, and the ECLoss channels' view), its table and its picture."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from export.part_masks import PART_NAMES
from export.verifier import FaceVerifier


@pytest.fixture(scope="module")
def evidence(runtime_data):
    verifier = FaceVerifier(runtime_data.model, device="cpu")
    return verifier, verifier.verify(*runtime_data.same_pair(), explain=True)


def test_match_evidence_sums_to_one_minus_similarity(runtime_data, evidence):
    verifier, r = evidence
    ev = r.evidence
    assert r.same and ev.similarity == r.similarity
    assert r.similarity == pytest.approx(verifier.similarity(*runtime_data.same_pair()),
                                         abs=1e-4)
    assert sorted(p.part for p in ev.parts) == sorted(PART_NAMES)
    total = sum(p.difference for p in ev.parts) + ev.other
    assert total == pytest.approx(1 - ev.similarity, abs=1e-6)
    diffs = [p.difference for p in ev.parts]
    assert diffs == sorted(diffs, reverse=True)          # largest difference first
    assert ev.channel_view is not None and ev.agree in (True, False)
    assert ev.landmarks == ("detected", "detected")      # the export's own MTCNN
    table = ev.table()
    assert table.splitlines()[0].startswith("part") and "1 - similarity" in table
    d = ev.to_dict()
    assert json.loads(json.dumps(d))["similarity"] == pytest.approx(ev.similarity)
    assert ev.render().size[0] > 0


def test_verify_explain_cli_writes_the_picture_and_the_table(runtime_data, runtime_env,
                                                             evidence, tmp_path):
    _, r = evidence
    a, b = runtime_data.same_pair()
    cmd = [sys.executable, "-m", "export.runtime", "verify", str(a), str(b), "--model",
           str(runtime_data.model), "--device", "cpu", "--explain"]
    out = subprocess.run(cmd + [str(tmp_path / "why.png")], capture_output=True, text=True,
                         env=runtime_env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("-> same person")
    rows = {line.split()[0]: float(line.split()[1]) for line in lines
            if line.split() and line.split()[0] in PART_NAMES}
    assert rows == {p.part: pytest.approx(p.difference, abs=1e-4) for p in r.evidence.parts}
    assert lines[-1] == f"wrote {tmp_path / 'why.png'}"
    with Image.open(tmp_path / "why.png") as im:
        assert im.format == "PNG" and im.size == r.evidence.render().size
    out = subprocess.run(cmd + [str(tmp_path / "why.jpg"), "--json"], capture_output=True,
                         text=True, env=runtime_env, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["picture"] == str(tmp_path / "why.jpg") and res["same"] is True
    assert [p["part"] for p in res["evidence"]["parts"]] == [p.part for p in r.evidence.parts]
    with Image.open(tmp_path / "why.jpg") as im:
        assert im.format == "JPEG"
