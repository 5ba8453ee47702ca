"""``python -m export``: says where the commands are, and exits with status 2.

Exporting a model needs torch and lives in the torch layer (``python -m zoo.exporting``); this
package is the runtime, which uses an export. Kept so that the old command (``python -m export
MODEL --out DIR``, before the split into two layers) answers with the new one instead of a
bare "No module named export.__main__".
"""
import sys

USAGE = """\
export is the runtime (onnxruntime, numpy, Pillow): it uses an exported model folder.
  export a model (needs torch, the full install):
    python -m zoo.exporting MODEL --out DIR [--int8]
  use an export:
    python -m export.runtime verify A.jpg B.jpg --model DIR [--explain why.png]
    python -m export.runtime explain A.jpg --model DIR --out heat.png
  the web page:
    python -m export.app --model DIR
See docs/export.md."""


def main() -> int:
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
