"""The runtime layer: verify and explain faces with an exported zoo model, on onnxruntime,
numpy and Pillow only (the web page adds Gradio). No module here imports torch or zoo, not even
inside a function (tests/structure.py checks it); exporting a model is the torch layer's job
(``python -m zoo.exporting``). This file stays a docstring: import what you use from its home
module (export.verifier, export.explainer, export.model_files, ...).

    python -m export.runtime verify A.jpg B.jpg --model out/
    python -m export.runtime explain A.jpg --model out/ --out heat.png
    python -m export.app --model out/

See docs/export.md.
"""
