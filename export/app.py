"""A local web page over the runtime: drop two face photos, see the decision, the similarity, the
per-part evidence and the heatmaps; or explain one face.

    pip install ".[app]"                      # Gradio; the runtime itself never imports it
    python -m export.app --model out/         # serves http://127.0.0.1:7860 (this machine only)

Two tabs. "Compare two faces": FaceVerifier.verify(explain=True) on the two photos, the decision
and similarity, the per-part table (the numbers of ``export.runtime verify --explain``) and its
picture (PairEvidence.render). "Explain one face": FaceExplainer.explain, the overlay of the most
telling channels and their parts (``export.runtime explain``). Photos go through the runtime's
own decoder (export.images.decode_image), so a bad upload (not an image, a decompression bomb, too
small, no face found with the crop) gives the decoder's one-line message on the page, never a
stack trace. The MTCNN crop (``--crop``, a checkbox on the page) runs the export's own
detector (``detector/``, torch-free) and is offered when the export has one.

The page works offline: Gradio's analytics are off, no share link is made, the server listens on
127.0.0.1 by default and the theme uses fonts shipped with Gradio (nothing is fetched from the
internet by the server or the browser). Handlers live in FacePage (plain values in, plain values
out, testable without a browser); build_app wires them into Gradio. See docs/export.md, "Web
page".
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from PIL import Image

from .detector import DETECTOR_DIR
from .explainer import DEFAULT_TOP_K, FaceExplainer
from .face_input import FaceInput
from .images import ImageError, decode_image
from .model_dir import ModelDirError
from .verifier import FaceVerifier

__all__ = ["FacePage", "PairView", "FaceView", "build_app", "crop_available", "main"]

LOG = logging.getLogger("export.app")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Uploads above this are refused by Gradio before they reach the decoder (a phone photo is
# 2-8 MB); decompression bombs (small files, huge pixel counts) are refused by decode_image.
DEFAULT_MAX_FILE_SIZE = "25mb"
MAX_TOP_K = 24
PART_COLUMNS = ["part", "difference", "similarity with it hidden", "channels say",
                "channels on this part"]
CHANNEL_COLUMNS = ["channel", "part on this face", "IoU", "usual part", "evidence", "peak"]
SHOWN_PART_CHANNELS = 5  # channels listed per part, as the CLI's table (all in the JSON)
PART_LEGEND = ("*difference*: the part's share of 1 - similarity, from hiding it on both faces "
               "(Shapley values over the 7 parts and the rest; they sum to 1 - similarity); "
               "*similarity with it hidden*: the two faces compared with that part filled in; "
               "*channels say*: the share the ECLoss channels that fire on that part of these "
               "faces give it (the second view). Method and limits: docs/export.md, 'Explaining "
               "a match'.")
CROP_HINT = "untick 'Always crop the largest face' for photos that are already face crops"


class PageInputError(ValueError):
    """A photo the page cannot use; the message is what the page shows."""


def crop_available(model_dir: Union[str, os.PathLike]) -> bool:
    """Whether the MTCNN crop can run on this export: it carries the runtime's detector
    (``detector/``, written by ``python -m zoo.exporting``; no torch needed)."""
    return (Path(model_dir) / DETECTOR_DIR).is_dir()


@dataclass
class PairView:
    """What the "Compare two faces" tab shows."""
    message: str                              # markdown: decision + similarity, or the error
    picture: Optional[Image.Image] = None     # PairEvidence.render(a, b)
    rows: List[List[Any]] = field(default_factory=list)  # per-part table, PART_COLUMNS
    evidence: Optional[Dict[str, Any]] = None  # PairEvidence.to_dict() (same numbers)
    table: str = ""                            # PairEvidence.table(): what the CLI prints
    ok: bool = False


@dataclass
class FaceView:
    """What the "Explain one face" tab shows."""
    message: str
    overlay: Optional[Image.Image] = None
    rows: List[List[Any]] = field(default_factory=list)  # CHANNEL_COLUMNS
    ok: bool = False


def _label(slot: str, path: Union[str, os.PathLike]) -> str:
    # Gradio stores uploads as <temp>/<hash>/<original name>: the user knows the last part.
    return f"photo {slot} ({Path(path).name})" if slot else f"photo ({Path(path).name})"


class FacePage:
    """The page's handlers over an exported model folder, without Gradio.

    crop: the default of the page's crop checkbox (only honoured when crop_available()).
    threshold, device: as for FaceVerifier.
    """

    def __init__(self, model_dir: Union[str, os.PathLike], threshold: Optional[float] = None,
                 device: str = "auto", crop: bool = False):
        self.model_dir = Path(model_dir)
        self.verifier = FaceVerifier(model_dir, threshold=threshold, device=device)
        if self.verifier.threshold is None:
            raise ValueError(f"{self.verifier.model.path}: the model carries no verification "
                             "threshold (exported before evaluation); pass --threshold")
        try:
            self.explainer = FaceExplainer(model_dir, device=device)
            self.no_channel_view = None
        except ModelDirError as exc:  # a reference model (dlib's ResNet): no feature maps
            if self.verifier.metadata.get("channel_view") != "none":
                raise
            self.explainer, self.no_channel_view = None, str(exc)
        self.has_parts = self.explainer is not None and self.explainer.parts is not None
        self.name = self.verifier.metadata.get("model_name") or self.model_dir.name
        self.can_crop = crop_available(model_dir)
        self.crop_default = bool(crop) and self.can_crop

    # -- inputs ---------------------------------------------------------------------------------

    def decode(self, path: Optional[Union[str, os.PathLike]], slot: str) -> Image.Image:
        """The uploaded file decoded to RGB by the runtime's decoder; PageInputError with a
        readable message otherwise."""
        if path is None:
            raise PageInputError(f"drop photo {slot}")
        try:
            return decode_image(path, name=_label(slot, path))
        except (ImageError, OSError) as exc:  # FileNotFoundError: the upload vanished
            raise PageInputError(str(exc)) from None

    def face(self, path: Optional[Union[str, os.PathLike]], slot: str, crop: bool) -> FaceInput:
        """What the model is given of the upload: with ``crop`` the largest face, cropped (or
        aligned, for a model that takes aligned chips); without it the runtime's default
        (export.face_input, "auto": a face crop is used as is, a photo is cropped to its face).
        PageInputError with a readable message when the photo cannot be used."""
        img = self.decode(path, slot)
        label = _label(slot, path)
        if crop and not self.can_crop:
            raise PageInputError(f"cropping needs the face detector, and this export has none "
                                 f"({self.model_dir / DETECTOR_DIR} is missing): export the "
                                 "model again")
        try:
            face = self.verifier.prepare(img, crop="always" if crop else "auto")[0]
        except ImageError as exc:
            # the page names the upload (not "image #0"), and its hint is the checkbox, not the CLI
            problem = re.sub(r"\(use --no-crop[^)]*\)", f"({CROP_HINT})", exc.problem)
            raise PageInputError(f"{label}: {problem}") from None
        face.name = label
        return face

    def preview(self, path: Optional[str], slot: str, crop: bool = False):
        """(image, message) shown under an upload: what the network will see, or the error."""
        if path is None:
            return None, ""
        try:
            face = self.face(path, slot, crop)
        except PageInputError as exc:
            return None, f"**Cannot use this photo.** {exc}"
        img = face.image
        note = f" ({face.note})" if face.note else ""
        used = ", MTCNN crop" if crop else f", {face.used}{note}"
        return img, f"{_label(slot, path)}: {img.width} x {img.height} px" + used

    # -- the two views --------------------------------------------------------------------------

    def compare(self, path_a: Optional[str], path_b: Optional[str],
                crop: bool = False) -> PairView:
        missing = [slot for slot, path in (("A", path_a), ("B", path_b)) if path is None]
        if missing:
            return PairView(message=f"Drop photo {' and photo '.join(missing)}.")
        try:
            img_a = self.face(path_a, "A", crop)
            img_b = self.face(path_b, "B", crop)
        except PageInputError as exc:
            return PairView(message=f"**Cannot compare.** {exc}")
        r = self.verifier.verify(img_a, img_b, explain=True, crop="never")
        ev = r.evidence
        rows = [[p.part, round(p.difference, 4), round(p.hidden_similarity, 4),
                 _round(p.channel_difference),
                 _channels_text(p) if ev.channel_view is not None else ""] for p in ev.parts]
        rows.append(["other (no part)", round(ev.other, 4), None, None, ""])
        top = ev.parts[0]
        message = (_decision(r) + f"\n\nThe part that made the most difference: "
                   f"**{top.part}** ({top.difference:+.4f} of 1 - similarity = "
                   f"{1 - ev.similarity:.4f}; with the {top.part} hidden on both faces the "
                   f"similarity is {top.hidden_similarity:.4f}). Landmarks: "
                   f"{ev.landmarks[0]} | {ev.landmarks[1]}.")
        if ev.channel_view is None and self.explainer is None:  # a reference model
            message += (f"\n\nNo channel view: {self.name} is not an ECLoss model; the part "
                        "evidence above is the explanation.")
        elif ev.channel_view is None:
            message += ("\n\nNo channel view: " + (self.verifier.pair_channels_missing() or
                                                    "this export has no channel table") + ".")
        elif ev.agree is not None:
            message += (" The ECLoss channels name the same part first: "
                        f"{'yes' if ev.agree else 'no'}.")
        return PairView(message=message, picture=ev.render(), rows=rows,
                        evidence=ev.to_dict(), table=ev.table(), ok=True)

    def explain(self, path: Optional[str], crop: bool = False,
                top_k: int = DEFAULT_TOP_K) -> FaceView:
        try:
            img = self.face(path, "", crop) if path is not None else None
        except PageInputError as exc:
            return FaceView(message=f"**Cannot explain this photo.** {exc}")
        if img is None:
            return FaceView(message="Drop a photo.")
        if self.explainer is None:
            return FaceView(message=f"**No channel view.** {self.no_channel_view}")
        top_k = max(1, min(int(top_k), MAX_TOP_K))
        x = self.explainer.explain(img, top_k=top_k, crop="never")
        rows = [[c.channel, c.part or "none", _round(c.iou), c.table_part or "-",
                 _round(c.evidence), round(c.peak, 4)] for c in x.channels]
        note = ("" if self.explainer.parts is not None and "channel_evidence" in
                self.explainer.parts else "\n\nThis export has no evidence table: channels are "
                "ranked by raw peak.")
        return FaceView(message=f"The {len(rows)} most telling channels of {Path(path).name}, "
                                "most telling first." + note,
                        overlay=x.overlay, rows=rows, ok=True)


def _channels_text(p) -> str:
    shown = ", ".join(str(c) for c in p.channels[:SHOWN_PART_CHANNELS])
    more = len(p.channels) - SHOWN_PART_CHANNELS
    return (shown or "none") + (f", +{more} more" if more > 0 else "")


def _round(v: Optional[float], nd: int = 4) -> Optional[float]:
    return None if v is None else round(float(v), nd)


def _decision(r) -> str:
    verdict = "Same person" if r.same else "Different people"
    return (f"## {verdict}\n\nsimilarity **{r.similarity:.4f}**, threshold {r.threshold:.4f} "
            f"(same person when similarity >= threshold)")


# ----------------------------------------------------------------------------------------------
# Gradio wiring
# ----------------------------------------------------------------------------------------------

def _safe(fn, n_outputs: int):
    """Run a handler; an unexpected error becomes a one-line message in the first output (the
    status text), never a traceback on the page. The traceback goes to the server's log."""
    def run(*args):
        try:
            return fn(*args)
        except Exception as exc:  # a bug or an onnxruntime failure: say so, keep the page alive
            LOG.exception("handler %s failed", getattr(fn, "__name__", fn))
            return (f"**Error.** {type(exc).__name__}: {exc}",) + (None,) * (n_outputs - 1)
    return run


def _model_line(page: FacePage) -> str:
    parts_note = ("" if page.has_parts else
                  " This export has no channel table: the ECLoss channels' view is not shown.")
    return (f"Model `{page.name}` from `{page.model_dir}`, threshold "
            f"{page.verifier.threshold:.4f}." + parts_note)


def _handlers(pages: List[FacePage]):
    """The page's Gradio handlers over FacePage: (chosen, preview, compare, explain_one); every
    one takes the model choice (an index into ``pages``) as its last input."""
    def chosen(m) -> FacePage:
        return pages[int(m or 0)]

    def preview(slot):
        def run(path, do_crop, m):
            img, note = chosen(m).preview(path, slot, do_crop)
            return note, img
        run.__name__ = f"preview_{slot}"
        return _safe(run, 2)

    def compare(path_a, path_b, do_crop, m):
        v = chosen(m).compare(path_a, path_b, do_crop)
        return (v.message, v.picture, v.rows or None,
                f"```\n{v.table}\n```" if v.table else "", v.evidence)

    def explain_one(path, do_crop, k, m):
        v = chosen(m).explain(path, do_crop, k)
        return v.message, v.overlay, v.rows or None

    return chosen, preview, compare, explain_one


def build_app(pages: Union[FacePage, Sequence[FacePage]]):
    """The Gradio Blocks of the page (not launched). Several pages (one per export folder):
    a model choice above the tabs."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and at launch
    import gradio as gr

    pages = [pages] if isinstance(pages, FacePage) else list(pages)
    if not pages:
        raise ValueError("build_app: no model")
    page = pages[0]
    with gr.Blocks(title="ECLoss face zoo: explain a match", analytics_enabled=False) as app:
        gr.Markdown("# Explain a match\nDrop two face photos to see whether they show the same "
                    "person and which face part made the difference (each part hidden on both "
                    "faces).")
        model = gr.Dropdown(choices=[(f"{p.name} ({p.model_dir})", i)
                                     for i, p in enumerate(pages)], value=0, label="Model",
                            visible=len(pages) > 1, elem_id="model")
        model_line = gr.Markdown(_model_line(page), elem_id="model_line")
        can_crop = any(p.can_crop for p in pages)
        crop = gr.Checkbox(value=page.crop_default, interactive=can_crop,
                           label="Always crop the largest face (--crop; unticked: faces are "
                                 "found in photos, face crops are used as they are)" + (
                               "" if can_crop else ": this export has no detector/"),
                           elem_id="crop")
        with gr.Tabs(selected="pair") as tabs:
            with gr.Tab("Compare two faces", id="pair"):
                with gr.Row():
                    with gr.Column():
                        file_a = gr.File(label="Photo A", type="filepath", elem_id="photo_a")
                        prev_a = gr.Image(label="A as read (cropped when ticked)", type="pil",
                                          format="png", interactive=False, height=180,
                                          elem_id="preview_a")
                        note_a = gr.Markdown(elem_id="note_a")
                        explain_a = gr.Button("Explain A alone", size="sm")
                    with gr.Column():
                        file_b = gr.File(label="Photo B", type="filepath", elem_id="photo_b")
                        prev_b = gr.Image(label="B as read (cropped when ticked)", type="pil",
                                          format="png", interactive=False, height=180,
                                          elem_id="preview_b")
                        note_b = gr.Markdown(elem_id="note_b")
                        explain_b = gr.Button("Explain B alone", size="sm")
                decision = gr.Markdown("Drop two photos.", elem_id="decision")
                evidence_img = gr.Image(label="Per-part evidence", type="pil", format="png",
                                        interactive=False, elem_id="evidence")
                parts_table = gr.Dataframe(headers=PART_COLUMNS, label="Per-part evidence "
                                           "(the differences sum to 1 - similarity)",
                                           interactive=False, elem_id="parts")
                gr.Markdown(PART_LEGEND)
                with gr.Accordion("The same numbers as python -m export.runtime verify "
                                  "--explain prints them, and as JSON", open=False):
                    cli_table = gr.Markdown(elem_id="cli_table")
                    evidence_json = gr.JSON(elem_id="evidence_json")
            with gr.Tab("Explain one face", id="one"):
                with gr.Row():
                    with gr.Column(scale=1):
                        file_one = gr.File(label="Photo", type="filepath", elem_id="photo_one")
                        top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1,
                                          label="channels shown")
                    with gr.Column(scale=2):
                        status_one = gr.Markdown("Drop a photo.", elem_id="status_one")
                        overlay = gr.Image(label="Most telling channels", type="pil",
                                           format="png", interactive=False, elem_id="overlay")
                channels_table = gr.Dataframe(headers=CHANNEL_COLUMNS, label="Channels",
                                              interactive=False, elem_id="channels")

        chosen, preview, compare, explain_one = _handlers(pages)

        pair_out = [decision, evidence_img, parts_table, cli_table, evidence_json]
        one_out = [status_one, overlay, channels_table]
        # One queue for every handler that runs the model: first come, first served, so the
        # result on the page is that of the last upload (onnxruntime uses every core anyway).
        run = {"concurrency_id": "model", "concurrency_limit": 1}
        for f, prev, note, slot in ((file_a, prev_a, note_a, "A"), (file_b, prev_b, note_b, "B")):
            f.change(preview(slot), [f, crop, model], [note, prev], **run).then(
                _safe(compare, 5), [file_a, file_b, crop, model], pair_out, **run)
        for control in (crop, model):  # a new crop rule or model: everything again
            control.change(preview("A"), [file_a, crop, model], [note_a, prev_a], **run).then(
                preview("B"), [file_b, crop, model], [note_b, prev_b], **run).then(
                _safe(compare, 5), [file_a, file_b, crop, model], pair_out, **run).then(
                _safe(explain_one, 3), [file_one, crop, top_k, model], one_out, **run)
        model.change(lambda m: _model_line(chosen(m)), [model], [model_line])
        file_one.change(_safe(explain_one, 3), [file_one, crop, top_k, model], one_out, **run)
        top_k.release(_safe(explain_one, 3), [file_one, crop, top_k, model], one_out, **run)

        # "Explain A alone": put photo A into the one-face tab (its change event explains it)
        for button, f in ((explain_a, file_a), (explain_b, file_b)):
            button.click(lambda path: (gr.Tabs(selected="one"), path), [f], [tabs, file_one])
    return app


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

APP_NEEDS = "the web page needs Gradio: pip install \".[app]\" (or -r requirements-app.txt)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.app",
                                description="Serve a local web page that verifies and explains "
                                            "faces with an exported zoo model. See "
                                            "docs/export.md, 'Web page'.")
    p.add_argument("--model", required=True, action="append",
                   help="folder written by `python -m zoo.exporting`; repeat it to offer several "
                        "models (a choice on the page)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine threshold (default: the one chosen at evaluation)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--crop", action="store_true",
                   help="tick the MTCNN crop by default (the export's detector/)")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                   help=f"largest upload accepted (default {DEFAULT_MAX_FILE_SIZE})")
    args = p.parse_args(argv)
    for folder in args.model:
        if args.crop and not crop_available(folder):
            print(f"error: --crop needs the face detector: {Path(folder) / DETECTOR_DIR} is "
                  "missing (export the model again)", file=sys.stderr)
            return 2
    try:
        pages = [FacePage(folder, threshold=args.threshold, device=args.device, crop=args.crop)
                 for folder in args.model]
    except (ModelDirError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("gradio") is None:
        print(f"error: {APP_NEEDS}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    app = build_app(pages)
    # ssr_mode=False: no Node server; share=False: no tunnel; the queue runs one job at a time
    # per event (onnxruntime already uses every core).
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=False, inbrowser=False,
        ssr_mode=False, mcp_server=False, max_file_size=args.max_file_size, show_error=False,
        footer_links=["settings"], quiet=True, prevent_thread_lock=True)
    # quiet: Gradio's own banner suggests share=True, a public tunnel this page never opens
    print(f"Serving the page at http://{args.host}:{args.port} (Ctrl+C stops it). "
          + ("Only this machine can reach it; --host 0.0.0.0 serves your network."
             if args.host in ("127.0.0.1", "localhost") else ""), flush=True)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
