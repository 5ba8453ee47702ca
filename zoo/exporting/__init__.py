"""The torch side of the export: a zoo model (and the face detector) to the files the runtime
layer (``export/``: onnxruntime, numpy and Pillow, no torch) runs.

    python -m zoo.exporting vgg19-ecloss --out out/       # export + parity checks (+ --int8)
    python -m zoo.exporting.detector --out DIR            # the MTCNN detector alone
    python -m zoo.exporting.audit FACES... --model out/   # do the shown channels follow faces?

Modules, one job each: ``model_export`` (export_model: every file of a model folder),
``graphs`` (the torch modules traced into each file), ``onnx_writer`` (one checked ONNX file),
``parity`` (the checks against PyTorch), ``head_baseline`` (head.onnx's reference faces),
``detector`` (facenet-pytorch's MTCNN to ONNX), ``quantize`` / ``int8_faces`` / ``int8_gate``
(``--int8``), ``audit``. See docs/export.md.
"""
