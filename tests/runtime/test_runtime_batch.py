"""Batch use over the runtime (export.batch, export.pairs, the `ecloss` command): embed a folder,
verify a pairs file, search a gallery, on held-out ORL faces and on a folder of photos. Runs in
the runtime-only venv too: no torch, no zoo."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from export.batch import embed_images, gallery, load_embeddings, save_embeddings, search
from export.cli import main
from export.pairs import read_pairs, verify_pairs
from export.verifier import FaceVerifier


@pytest.fixture(scope="module")
def verifier(runtime_data):
    return FaceVerifier(runtime_data.model, device="cpu")


def _folder(runtime_data, dest):
    for ident, files in runtime_data.faces.items():
        (dest / ident).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / ident / f.name)
    return dest


def test_embed_a_folder_to_npz_with_paths_and_export_id(runtime_data, verifier, tmp_path,
                                                        capsys):
    faces = _folder(runtime_data, tmp_path / "faces")
    (faces / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "emb.npz"
    assert main(["embed", str(faces), "--model", str(runtime_data.model), "--out", str(out),
                 "--no-crop", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 undecodable" in captured.err and "broken.jpg" in captured.err
    assert "embed: " in captured.err  # the progress line
    emb = load_embeddings(out)
    n = sum(len(v) for v in runtime_data.faces.values())
    assert emb.vectors.shape == (n, int(verifier.metadata["embedding_dim"]))
    assert emb.export_id == verifier.metadata["export_id"]
    assert sorted(set(emb.identities)) == sorted(runtime_data.faces)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1, atol=1e-5)
    # the API gives the same vectors as FaceVerifier.embed
    direct = verifier.embed([emb.paths[0]], crop="never")
    np.testing.assert_allclose(direct[0], emb.vectors[0], atol=1e-5)


def test_verify_a_plain_pairs_list_with_labels(runtime_data, verifier, tmp_path, capsys):
    (a, b), (c, d) = runtime_data.same_pair(), runtime_data.different_pair()
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{a}\t{b}\t1\n{c}\t{d}\tdifferent\n{a}\t{tmp_path / 'gone.jpg'}\t0\n")
    rep = verify_pairs(verifier, read_pairs(pairs), crop="never")
    assert rep["num_pairs"] == 2 and len(rep["skipped"]) == 1
    assert rep["pairs"][0]["label"] is True and rep["pairs"][1]["label"] is False
    assert 0 <= rep["accuracy"] <= 1 and rep["auc"] in (0.0, 0.5, 1.0)
    assert main(["verify-pairs", str(pairs), "--model", str(runtime_data.model), "--no-crop",
                 "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_labelled"] == 2 and out["export_id"] == verifier.metadata["export_id"]


def test_verify_pairs_in_the_lfw_layout(runtime_data, verifier, tmp_path, capsys):
    root = tmp_path / "lfw"
    for ident, files in runtime_data.faces.items():
        (root / ident).mkdir(parents=True)
        for k, f in enumerate(files, 1):
            with Image.open(f) as im:
                im.convert("RGB").save(root / ident / f"{ident}_{k:04d}.jpg")
    i1, i2 = list(runtime_data.faces)[:2]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1 2\n{i1}\t1\t2\n{i1}\t1\t{i2}\t1\n")
    parsed = read_pairs(pairs, root=root)
    assert [p.same for p in parsed] == [True, False]
    assert parsed[1].b == root / i2 / f"{i2}_0001.jpg"
    assert main(["verify-pairs", str(pairs), "--root", str(root), "--model",
                 str(runtime_data.model), "--no-crop", "--no-progress"]) == 0
    assert "2 labelled: accuracy" in capsys.readouterr().out


def test_a_bad_pairs_line_is_one_line(runtime_data, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.jpg b.jpg maybe\n")
    assert main(["verify-pairs", str(pairs), "--model", str(runtime_data.model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pairs.txt:1: label 'maybe'" in err[0]


def test_search_a_gallery_folder_and_an_embeddings_file(runtime_data, verifier, tmp_path,
                                                        capsys):
    gal = tmp_path / "gallery"
    probes = []
    for ident, files in runtime_data.faces.items():
        (gal / ident).mkdir(parents=True)
        probes.append(files[0])
        for f in files[1:]:
            shutil.copy(f, gal / ident / f.name)
    g = gallery(verifier, gal, crop="never")
    hits = search(g, embed_images(verifier, probes, crop="never"), top_k=2)
    assert len(hits) == len(probes)
    for h in hits:
        assert len(h["matches"]) == 2 and h["best"] == h["matches"][0]["identity"]
        assert h["matches"][0]["similarity"] >= h["matches"][1]["similarity"]
    # everything above a cosine of 1 is nothing
    assert all(not h["matches"] for h in search(g, embed_images(verifier, probes,
                                                                crop="never"), threshold=1.01))
    npz = save_embeddings(tmp_path / "gallery.npz", g)
    assert main(["search", str(probes[0]), "--gallery", str(npz), "--model",
                 str(runtime_data.model), "--no-crop", "--json", "--top-k", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["probe"] == str(probes[0]) and len(out[0]["matches"]) == 1


def test_a_folder_of_photos_with_detection_by_default(runtime_data, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, f in enumerate(list(runtime_data.faces.values())[0]):
        canvas = Image.new("RGB", (320, 240), (120 + 20 * k, 140, 160))
        with Image.open(f) as im:
            canvas.paste(im.convert("RGB"), (100, 60))
        canvas.save(photos / f"photo{k}.jpg")
    out = tmp_path / "photos.npz"
    assert main(["embed", str(photos), "--model", str(runtime_data.model), "--out", str(out),
                 "--no-progress"]) == 0
    emb = load_embeddings(out)
    assert len(emb) + capsys.readouterr().err.count("photo") >= 1
    assert all(p.endswith(".jpg") for p in emb.paths)


def test_ecloss_delegates_verify_and_reports_bad_inputs(runtime_data, runtime_env, tmp_path):
    a, b = runtime_data.same_pair()
    out = subprocess.run([sys.executable, "-m", "export.cli", "verify", str(a), str(b),
                          "--model", str(runtime_data.model), "--no-crop", "--json"],
                         capture_output=True, text=True, env=runtime_env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "similarity" in json.loads(out.stdout)
    bad = subprocess.run([sys.executable, "-m", "export.cli", "embed", str(tmp_path / "none"),
                          "--model", str(runtime_data.model), "--out", str(tmp_path / "e.npz")],
                         capture_output=True, text=True, env=runtime_env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"ecloss embed: error: {tmp_path / 'none'}: no such file or folder"]
