"""Small .rec / image bytes for the data tests (test_hardening_data, test_hardening_bin)."""
import io
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.recordio import IRHeader, RecordIOWriter, pack_record


def png_bytes(seed=0, size=20) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_rec(path, labels, num_classes=None):
    """An insightface .rec of len(labels) image records with these (raw) labels; with
    num_classes, identity records and record 0 announcing that many identities."""
    with RecordIOWriter(path) as w:
        for key, lab in enumerate(labels, 1):
            w.write(key, pack_record(IRHeader(0, lab, key, 0), png_bytes(key)))
        if num_classes is not None:
            first = len(labels) + 1
            for k in range(num_classes):
                w.write(first + k, pack_record(IRHeader(0, (1, first), first + k, 0)))
            w.write(0, pack_record(IRHeader(0, (first, first + num_classes), 0, 0)))
    return Path(path)
