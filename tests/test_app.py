"""The local web page's handlers (export.app.FacePage), without a browser: the numbers it shows
are the runtime's, and every bad upload gives a one-line message naming the file, never a stack
trace. The page in a real browser: tests/test_app_browser.py."""
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export import app
from export.explainer import FaceExplainer
from export.verifier import FaceVerifier
from zoo.data.orl import ORLFaces, orl_root
from zoo.exporting.model_export import export_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The committed trained fixture exported (with its channel -> part table)."""
    out = tmp_path_factory.mktemp("app_model")
    export_model(FIXTURE, out, torchscript=False, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def page(model_dir):
    return app.FacePage(model_dir, device="cpu")


@pytest.fixture(scope="module")
def faces():
    """(same-person pair, different-person pair) of held-out ORL files."""
    ids = [int(i) for i in ORLFaces(split="heldout").identities]
    root = orl_root()
    return ((root / f"s{ids[0]}" / "1.pgm", root / f"s{ids[0]}" / "2.pgm"),
            (root / f"s{ids[0]}" / "1.pgm", root / f"s{ids[1]}" / "1.pgm"))


def bomb_png(width=20000, height=20000) -> bytes:
    """A 60-byte PNG whose valid header claims width x height grey pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------------------------
# the pair view shows the runtime's numbers
# ----------------------------------------------------------------------------------------------

def test_compare_shows_the_runtimes_decision_and_evidence(page, model_dir, faces):
    verifier = FaceVerifier(model_dir, device="cpu")
    for a, b in faces:
        view = page.compare(str(a), str(b))
        r = verifier.verify(a, b, explain=True)
        assert view.ok
        verdict = "Same person" if r.same else "Different people"
        assert view.message.startswith(f"## {verdict}")
        assert f"similarity **{r.similarity:.4f}**" in view.message
        ev = r.evidence
        # one row per part in the runtime's order, then the pixels of no part; the same numbers
        assert [row[0] for row in view.rows] == [p.part for p in ev.parts] + ["other (no part)"]
        for row, p in zip(view.rows, ev.parts):
            assert row[1:4] == [round(p.difference, 4), round(p.hidden_similarity, 4),
                                round(p.channel_difference, 4)]
            shown = [int(c) for c in row[4].split(", +")[0].split(", ")] if p.channels else []
            assert shown == p.channels[:app.SHOWN_PART_CHANNELS]
        assert view.rows[-1][1] == round(ev.other, 4)
        # the numbers add up as the method says (the shares sum to 1 - similarity)
        assert sum(row[1] for row in view.rows) == pytest.approx(1 - r.similarity, abs=5e-4)
        assert f"**{ev.parts[0].part}**" in view.message
        assert view.evidence == ev.to_dict()
        assert view.table == ev.table()  # the text the CLI prints
        json.dumps(view.evidence)  # what the page's JSON box gets
        expected = ev.render()
        assert view.picture.size == expected.size
        assert np.array_equal(np.asarray(view.picture), np.asarray(expected))
    same, diff = (page.compare(str(a), str(b)) for a, b in faces)
    assert same.evidence["similarity"] > diff.evidence["similarity"]


def test_compare_asks_for_the_missing_photo(page, faces):
    (a, b), _ = faces
    assert page.compare(None, None).message == "Drop photo A and photo B."
    assert page.compare(str(a), None).message == "Drop photo B."
    assert page.compare(None, str(b)) == app.PairView(message="Drop photo A.")


def test_compare_without_part_labels_still_explains(model_dir, faces, tmp_path):
    """An export without channel_parts.json: the decision and the intervention view (it needs
    only the embedding), and a note saying why there is no channel view."""
    weights = tmp_path / "weights"
    shutil.copytree(FIXTURE, weights, ignore=shutil.ignore_patterns("*.py", "channel_parts.json"))
    out = tmp_path / "out"
    export_model(weights, out, torchscript=False, log=lambda *a: None)
    bare = app.FacePage(out, device="cpu")
    assert not bare.has_parts
    (a, b), _ = faces
    view = bare.compare(str(a), str(b))
    r = FaceVerifier(out, device="cpu").verify(a, b)
    assert view.ok and view.picture is not None and len(view.rows) == 8
    assert all(row[3] is None for row in view.rows)              # no channel view
    assert f"similarity **{r.similarity:.4f}**" in view.message
    assert "No channel view" in view.message and "channel_parts.json" in view.message


def test_compare_on_an_export_without_head_onnx_still_explains(model_dir, faces, tmp_path):
    """An export made before head.onnx existed: the decision, the intervention view, and the
    runtime's message about the channel view."""
    old = tmp_path / "old"
    shutil.copytree(model_dir, old, ignore=shutil.ignore_patterns("head.onnx"))
    (a, b), _ = faces
    view = app.FacePage(old, device="cpu").compare(str(a), str(b))
    assert view.ok and view.picture is not None and len(view.rows) == 8
    assert view.message.startswith("## Same person") or view.message.startswith("## Different")
    assert "No channel view: " in view.message and "head.onnx" in view.message


# ----------------------------------------------------------------------------------------------
# the single-face view
# ----------------------------------------------------------------------------------------------

def test_explain_shows_the_explainers_channels(page, model_dir, faces):
    (a, _), _ = faces
    view = page.explain(str(a), top_k=5)
    x = FaceExplainer(model_dir, device="cpu").explain(a, top_k=5)
    assert view.ok and len(view.rows) == 5
    assert [row[0] for row in view.rows] == [c.channel for c in x.channels]
    assert [row[1] for row in view.rows] == [c.part or "none" for c in x.channels]
    assert [row[3] for row in view.rows] == [c.table_part or "-" for c in x.channels]
    assert [row[5] for row in view.rows] == [round(c.peak, 4) for c in x.channels]
    assert np.array_equal(np.asarray(view.overlay), np.asarray(x.overlay))
    assert "1.pgm" in view.message
    assert page.explain(str(a), top_k=1000).rows.__len__() == app.MAX_TOP_K
    assert page.explain(None).message == "Drop a photo."


# ----------------------------------------------------------------------------------------------
# bad uploads: one readable line naming the file, no traceback
# ----------------------------------------------------------------------------------------------

def _bad_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a face\n")
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(bomb_png())
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    truncated = tmp_path / "cut.jpg"
    with Image.open(orl_root() / "s1" / "1.pgm") as im:
        im.convert("RGB").save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:600])
    return {text: "not an image file", bomb: "decompression bomb",
            tiny: "smaller than the minimum", truncated: "corrupt or truncated"}


def test_bad_uploads_give_a_readable_message(page, faces, tmp_path):
    (good, _), _ = faces
    for path, problem in _bad_files(tmp_path).items():
        img, note = page.preview(str(path), "B")
        assert img is None
        assert note.startswith(f"**Cannot use this photo.** photo B ({path.name}): ")
        assert problem in note and "Traceback" not in note and "\n" not in note
        view = page.compare(str(good), str(path))
        assert not view.ok and view.picture is None
        assert view.message.startswith(f"**Cannot compare.** photo B ({path.name}): ")
        assert problem in view.message
        one = page.explain(str(path))
        assert not one.ok and one.overlay is None
        assert one.message.startswith(f"**Cannot explain this photo.** photo ({path.name}): ")
    gone = tmp_path / "gone.png"
    assert "image file not found" in page.preview(str(gone), "A")[1]


def test_preview_shows_what_the_network_gets(page, faces):
    (a, _), _ = faces
    img, note = page.preview(str(a), "A")
    assert img.mode == "RGB" and img.size == (92, 112)  # decoded, not yet resized
    # the runtime's default found the face and kept the frame: ORL's faces are face crops
    assert note == "photo A (1.pgm): 92 x 112 px, face crop as given"
    assert page.preview(None, "A") == (None, "")


def test_several_models_give_a_model_choice(page, model_dir):
    pytest.importorskip("gradio")
    other = app.FacePage(model_dir, device="cpu")
    blocks = app.build_app([page, other])
    choices = [c for c in blocks.blocks.values() if getattr(c, "elem_id", None) == "model"]
    assert len(choices) == 1 and choices[0].visible
    assert [v for _, v in choices[0].choices] == [0, 1]
    single = app.build_app(page)
    hidden = [c for c in single.blocks.values() if getattr(c, "elem_id", None) == "model"]
    assert not hidden[0].visible


def test_no_face_with_crop_is_a_readable_message(page, tmp_path):
    flat = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 120), 128, np.uint8)).save(flat)
    assert page.can_crop
    img, note = page.preview(str(flat), "A", crop=True)
    assert img is None
    assert note == ("**Cannot use this photo.** photo A (wall.png): the face detector found no "
                    f"face ({app.CROP_HINT})")
    # unticked, the runtime's default (detect; no face: the photo as given, and it says so)
    img, note = page.preview(str(flat), "A")
    assert img is not None and note.endswith("as given (no face found: the whole image was "
                                             "used as given)")
    face, note = page.preview(str(orl_root() / "s1" / "1.pgm"), "A", crop=True)
    assert abs(face.width - face.height) <= 1 and note.endswith("MTCNN crop")  # rounding


def test_crop_without_a_detector_says_what_to_do(model_dir, faces, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("detector"))
    page = app.FacePage(bare, device="cpu", crop=True)
    assert page.crop_default is False  # the checkbox starts unticked and disabled
    (a, b), _ = faces
    view = page.compare(str(a), str(b), crop=True)
    assert view.message.startswith("**Cannot compare.** cropping needs the face detector")
    assert "detector is missing" in view.message
    assert app.main(["--model", str(bare), "--crop"]) == 2


def test_unexpected_errors_become_one_line(caplog):
    def broken(x):
        raise RuntimeError("onnxruntime exploded")
    out = app._safe(broken, 3)("x")
    assert out == ("**Error.** RuntimeError: onnxruntime exploded", None, None)
    assert "Traceback" in caplog.text  # the server's log keeps the traceback


# ----------------------------------------------------------------------------------------------
# the command line and the import boundaries
# ----------------------------------------------------------------------------------------------

def test_main_refuses_bad_model_folders(tmp_path, capsys):
    assert app.main(["--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        app.main([])  # --model is required


def test_main_without_gradio_says_what_to_install(model_dir, monkeypatch, capsys):
    real = app.importlib.util.find_spec
    monkeypatch.setattr(app.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gradio" else real(name, *a))
    assert app.main(["--model", str(model_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {app.APP_NEEDS}"


NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "facenet_pytorch", "zoo"):
                raise ImportError(f"{name} is blocked in this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
""")

PAGE_WITHOUT_TORCH = textwrap.dedent("""
    import json
    from export import app
    page = app.FacePage(sys.argv[1], device="cpu")
    view = page.compare(sys.argv[2], sys.argv[3])
    blocks = app.build_app(page)
    print("RESULT " + json.dumps({"ok": view.ok, "rows": len(view.rows),
                                  "can_crop": page.can_crop, "torch": "torch" in sys.modules,
                                  "blocks": type(blocks).__name__}))
""")


def test_page_runs_on_a_runtime_only_machine(model_dir, faces):
    """With torch unimportable the page builds, compares and can crop (the export's detector);
    and the runtime never imports gradio."""
    pytest.importorskip("gradio")
    (a, b), _ = faces
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    r = subprocess.run([sys.executable, "-c", NO_TORCH + PAGE_WITHOUT_TORCH, str(model_dir),
                        str(a), str(b)], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert res == {"ok": True, "rows": res["rows"], "can_crop": True, "torch": False,
                   "blocks": "Blocks"} and res["rows"] >= 2
    r = subprocess.run([sys.executable, "-c", "import sys, export.runtime, export.verifier, "
                        "export.explainer, export.channel_evidence;"
                        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                        "('gradio', 'torch', 'fastapi')))"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
