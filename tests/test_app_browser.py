"""The web page (python -m export.app) in a real browser: Debian's headless Chromium driven by
Playwright uploads two held-out ORL faces, waits for the decision, checks it against the runtime,
checks that the images rendered, uploads a text file and reads the message, switches to the
single-face view, and saves a screenshot. Nothing the page loads may come from another host.

Needs /usr/bin/chromium (`make install` installs it as root) and playwright (requirements-app.txt;
its own browser download is never used). Without them the test fails under CI=true and skips
elsewhere, saying why.

The screenshot in docs/figures/app_screenshot.png is made by the same code on a trained model:

    python tests/test_app_browser.py --model out/vgg19-ecloss --out docs/figures/app_screenshot.png
"""
import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# Headless Chromium as root on a closed network: without the background-networking flags its
# connections to Google's services are refused, many at a time.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
START_TIMEOUT = 60   # s for the app to answer (gradio's import dominates on a busy 2-core box)
STEP_TIMEOUT = 30    # s for one step on the page (an upload and the model runs it triggers)


def _require(ok: bool, why: str) -> None:
    """Fail under CI (the browser test must run there), skip elsewhere."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} (CI=true: the browser test must run; `make install` installs it "
                    "as root)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model_dir, log_path, temp_dir, *args):
    """Run ``python -m export.app --model model_dir *args`` on a free localhost port; yield its
    URL."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_TEMP_DIR=str(temp_dir))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "export.app", "--model", str(model_dir),
                                 "--port", str(port), *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"export.app exited with {proc.returncode}:\n"
                                   + Path(log_path).read_text())
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"export.app did not answer on {url} within {START_TIMEOUT} "
                                   "s:\n" + Path(log_path).read_text())
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rendered(page, selector: str) -> int:
    """naturalWidth of the <img> inside ``selector`` (0 when absent or not loaded)."""
    return page.evaluate("s => { const i = document.querySelector(s + ' img');"
                         " return i && i.complete ? i.naturalWidth : 0; }", selector)


def _wait_rendered(page, selector: str) -> None:
    page.wait_for_function("s => { const i = document.querySelector(s + ' img');"
                           " return i && i.complete && i.naturalWidth > 0; }", arg=selector,
                           timeout=STEP_TIMEOUT * 1000)


def drive(url, face_a, face_b, screenshot, bad_file=None, big_file=None,
          one_face_screenshot=None) -> dict:
    """Use the page as a person would; return what it showed (texts, image widths, hosts)."""
    from playwright.sync_api import expect, sync_playwright

    seen = {"hosts": set(), "page_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT * 1000)
            page.on("request", lambda r: seen["hosts"].add(r.url.split("/")[2])
                    if r.url.startswith("http") else None)
            page.on("pageerror", lambda e: seen["page_errors"].append(str(e)))
            page.goto(url, wait_until="networkidle")

            # the pair view: photo A, wait for its preview, then photo B
            page.locator("#photo_a input[type=file]").set_input_files(str(face_a))
            _wait_rendered(page, "#preview_a")
            page.locator("#photo_b input[type=file]").set_input_files(str(face_b))
            _wait_rendered(page, "#preview_b")
            decision = page.locator("#decision")
            expect(decision).to_contain_text("similarity")
            _wait_rendered(page, "#evidence")
            seen["decision"] = decision.inner_text()
            seen["parts_table"] = page.locator("#parts").inner_text()
            seen["widths"] = {s: _rendered(page, s) for s in
                              ("#preview_a", "#preview_b", "#evidence")}
            page.screenshot(path=str(screenshot), full_page=True)

            if bad_file is not None:  # not an image: the message, not a traceback
                page.locator("#photo_b button[aria-label='Clear']").click()
                expect(decision).to_contain_text("Drop photo B")
                page.locator("#photo_b input[type=file]").set_input_files(str(bad_file))
                expect(page.locator("#note_b")).to_contain_text("Cannot use this photo")
                expect(decision).to_contain_text("Cannot compare")
                seen["bad_note"] = page.locator("#note_b").inner_text()
                seen["bad_decision"] = decision.inner_text()
                seen["bad_evidence_width"] = _rendered(page, "#evidence")
                seen["body_after_bad"] = page.locator("body").inner_text()
            if big_file is not None:  # above --max-file-size: Gradio's own message box
                page.locator("#photo_b button[aria-label='Clear']").click()
                page.locator("#photo_b input[type=file]").set_input_files(str(big_file))
                toast = page.get_by_text("exceed the maximum allowed size")
                expect(toast).to_be_visible()
                seen["big_message"] = toast.inner_text()

            # "Explain A alone" switches to the single-face view and explains photo A
            page.get_by_role("button", name="Explain A alone").click()
            _wait_rendered(page, "#overlay")
            expect(page.locator("#status_one")).to_contain_text("most telling channels")
            seen["one_status"] = page.locator("#status_one").inner_text()
            seen["one_tab_selected"] = page.get_by_role(
                "tab", name="Explain one face").get_attribute("aria-selected")
            seen["overlay_width"] = _rendered(page, "#overlay")
            seen["channels_table"] = page.locator("#channels").inner_text()
            if one_face_screenshot is not None:
                page.screenshot(path=str(one_face_screenshot), full_page=True)
        finally:
            browser.close()
    return seen


# ----------------------------------------------------------------------------------------------
# the test
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("torch")  # the export is the torch side; the page itself is not
    from zoo.exporting.model_export import export_model
    out = tmp_path_factory.mktemp("app_browser_model")
    export_model(ROOT / "tests" / "fixtures" / "export_tiny", out, torchscript=False,
                 log=lambda *a: None)
    return out


def test_page_in_a_real_browser(model_dir, tmp_path):
    _require(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "playwright is not installed: pip install -r requirements-app.txt")
    try:
        import gradio  # noqa: F401
    except ImportError:
        _require(False, "gradio is not installed: pip install -r requirements-app.txt")
    from export.verifier import FaceVerifier
    from zoo.data.orl import ORLFaces, orl_root

    ident = int(ORLFaces(split="heldout").identities[0])
    face_a, face_b = (orl_root() / f"s{ident}" / f"{n}.pgm" for n in (1, 2))
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a face\n")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 300_000)
    expected = FaceVerifier(model_dir, device="cpu").verify(face_a, face_b, explain=True)
    picture_width = expected.evidence.render().width

    shot = tmp_path / "app.png"
    with serve(model_dir, tmp_path / "app.log", tmp_path / "gradio", "--max-file-size",
               "200kb") as url:
        seen = drive(url, face_a, face_b, shot, bad_file=bad, big_file=big)

    # the decision and the similarity the runtime gives for the same two files
    verdict = "Same person" if expected.same else "Different people"
    assert seen["decision"].startswith(verdict), seen["decision"]
    assert f"similarity {expected.similarity:.4f}" in seen["decision"], seen["decision"]
    for p in expected.evidence.parts:
        assert p.part in seen["parts_table"]
        assert f"{p.difference:.4f}".rstrip("0") in seen["parts_table"]
    # the images rendered: the previews (decoded ORL faces, 92 px wide) and the evidence picture
    assert seen["widths"] == {"#preview_a": 92, "#preview_b": 92, "#evidence": picture_width}
    # the bad upload: one readable line naming the file, and the old result cleared
    assert "photo B (notes.txt): not an image file" in seen["bad_note"], seen["bad_note"]
    assert "notes.txt" in seen["bad_decision"] and seen["bad_evidence_width"] == 0
    assert "Traceback" not in seen["body_after_bad"] and "Error" not in seen["bad_decision"]
    assert "big.png" in seen["big_message"] and "200" in seen["big_message"], seen["big_message"]
    # the single-face view
    assert seen["one_tab_selected"] == "true"
    assert "1.pgm" in seen["one_status"] and seen["overlay_width"] > 0
    assert "channel" in seen["channels_table"]
    # offline: everything came from the app itself, nothing from a CDN or a font host
    assert seen["hosts"] == {url.split("/")[2]}, seen["hosts"]
    assert seen["page_errors"] == []
    from PIL import Image
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width == 1280 and im.height > 900


# ----------------------------------------------------------------------------------------------
# docs/figures/app_screenshot.png
# ----------------------------------------------------------------------------------------------

def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Screenshot the web page on an exported model")
    ap.add_argument("--model", required=True, help="folder written by python -m zoo.exporting")
    ap.add_argument("--out", required=True, help="screenshot of the pair view (PNG)")
    ap.add_argument("--one-face-out", default=None, help="screenshot of the single-face view")
    ap.add_argument("--faces", nargs=2, default=None, help="two photos (default: held-out ORL)")
    args = ap.parse_args(argv)
    if args.faces:
        faces = [Path(f) for f in args.faces]
    else:
        from zoo.data.orl import ORLFaces, orl_root
        ident = int(ORLFaces(split="heldout").identities[0])
        faces = [orl_root() / f"s{ident}" / f"{n}.pgm" for n in (1, 2)]
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, \
            serve(args.model, Path(tmp) / "app.log", Path(tmp) / "gradio") as url:
        seen = drive(url, faces[0], faces[1], args.out, one_face_screenshot=args.one_face_out)
    print(seen["decision"])
    print("hosts:", sorted(seen["hosts"]))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
