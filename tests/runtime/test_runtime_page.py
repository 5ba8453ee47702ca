"""The web page's handlers with the runtime alone (export.app.FacePage: plain values in and
out, the numbers of the runtime), and the Gradio page built from them (not served: the
browser test is tests/test_app_browser.py)."""
import numpy as np
import pytest
from PIL import Image

from export import app
from export.explainer import FaceExplainer
from export.verifier import FaceVerifier


@pytest.fixture(scope="module")
def page(runtime_data):
    return app.FacePage(runtime_data.model, device="cpu")


def test_compare_shows_the_runtimes_decision(runtime_data, page):
    verifier = FaceVerifier(runtime_data.model, device="cpu")
    for pair, verdict in ((runtime_data.same_pair(), "Same person"),
                          (runtime_data.different_pair(), "Different people")):
        view = page.compare(*map(str, pair))
        r = verifier.verify(*pair, explain=True)
        assert view.ok and view.message.startswith(f"## {verdict}")
        assert f"similarity **{r.similarity:.4f}**" in view.message
        assert [row[0] for row in view.rows] == [p.part for p in r.evidence.parts] + [
            "other (no part)"]
        assert [row[1] for row in view.rows[:-1]] == [round(p.difference, 4)
                                                      for p in r.evidence.parts]
        assert view.table == r.evidence.table() and view.evidence == r.evidence.to_dict()
        assert isinstance(view.picture, Image.Image)
    assert page.compare(None, None).message == "Drop photo A and photo B."


def test_explain_one_face_shows_the_explainers_channels(runtime_data, page):
    face, _ = runtime_data.same_pair()
    view = page.explain(str(face), top_k=4)
    x = FaceExplainer(runtime_data.model, device="cpu").explain(face, top_k=4)
    assert view.ok and [row[0] for row in view.rows] == [c.channel for c in x.channels]
    assert [row[1] for row in view.rows] == [c.part or "none" for c in x.channels]
    assert np.array_equal(np.asarray(view.overlay), np.asarray(x.overlay))
    assert page.explain(None).message == "Drop a photo."


def test_bad_upload_is_one_readable_line(runtime_data, page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a face\n")
    img, note = page.preview(str(text), "B")
    assert img is None and note.startswith("**Cannot use this photo.** photo B (notes.txt): ")
    assert "not an image file" in note and "\n" not in note
    face, _ = runtime_data.same_pair()
    view = page.compare(str(face), str(text))
    assert not view.ok and view.message.startswith("**Cannot compare.** photo B (notes.txt): ")
    img, note = page.preview(str(face), "A")
    assert img.mode == "RGB" and note.startswith(f"photo A ({face.name}): ")


def test_crop_runs_on_the_exports_detector(runtime_data, page):
    assert page.can_crop
    face, _ = runtime_data.same_pair()
    img, note = page.preview(str(face), "A", crop=True)
    assert img is not None and note.endswith("MTCNN crop")
    assert page.compare(str(face), str(face), crop=True).ok


def test_the_gradio_page_is_built(page):
    blocks = app.build_app(page)
    assert type(blocks).__name__ == "Blocks"
