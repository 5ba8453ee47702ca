"""verify with the runtime alone: the API (export.verifier) and `python -m export.runtime
verify` on an exported model folder, same person and different people."""
import json
import subprocess
import sys

import numpy as np
import pytest

from export.verifier import FaceVerifier


def _cli(env, *args):
    r = subprocess.run([sys.executable, "-m", "export.runtime", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def verifier(runtime_data):
    return FaceVerifier(runtime_data.model, device="cpu")


def test_verify_same_person_and_different_people(runtime_data, verifier):
    assert verifier.threshold is not None and verifier.providers == ["CPUExecutionProvider"]
    same = verifier.verify(*runtime_data.same_pair())
    different = verifier.verify(*runtime_data.different_pair())
    assert same.same and not different.same
    assert same.similarity >= verifier.threshold > different.similarity
    assert same.threshold == different.threshold == verifier.threshold
    assert same.evidence is None                     # only verify(explain=True) explains


def test_embeddings_are_unit_vectors_and_give_the_similarity(runtime_data, verifier):
    a, b = runtime_data.same_pair()
    e = verifier.embed([a, b])
    assert e.shape == (2, int(verifier.metadata["embedding_dim"])) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert verifier.similarity(a, b) == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


def test_verify_cli(runtime_data, runtime_env, verifier):
    a, b = runtime_data.same_pair()
    code, out, err = _cli(runtime_env, "verify", a, b, "--model", runtime_data.model,
                          "--device", "cpu")
    assert code == 0, err
    assert out.strip().endswith("-> same person") and f"threshold {verifier.threshold:.4f}" in out
    a, c = runtime_data.different_pair()
    code, out, err = _cli(runtime_env, "verify", a, c, "--model", runtime_data.model,
                          "--device", "cpu", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["same"] is False
    assert res["similarity"] == pytest.approx(verifier.similarity(a, c), abs=1e-5)


def test_verify_cli_bad_input_is_one_line(runtime_data, runtime_env, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a png")
    a, _ = runtime_data.same_pair()
    code, _, err = _cli(runtime_env, "verify", a, bad, "--model", runtime_data.model)
    assert code == 2 and err.count("\n") == 1 and f"{bad}: not an image file" in err
    code, _, err = _cli(runtime_env, "verify", a, a, "--model", tmp_path / "nowhere")
    assert code == 2 and "model folder not found" in err and "python -m zoo.exporting" in err
