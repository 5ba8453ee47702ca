"""The runtime's own tests: what a machine with only `pip install ".[runtime,app]"` (numpy,
Pillow, onnxruntime, Gradio; no torch, no zoo) can do with an exported model folder.

Where the model and the faces come from:

- ``ECLOSS_RUNTIME_MODEL``: an exported model folder (``python -m zoo.exporting MODEL --out
  DIR``); ``ECLOSS_RUNTIME_FACES``: identity folders ``s<ID>/<n>.pgm`` of faces the model never
  trained on (``python tests/runtime/conftest.py --faces DIR`` writes them from ORL). ``make
  test-runtime`` sets both, and ``ECLOSS_RUNTIME_INSTALLED=1``: the tests then run from a copy
  of this folder in a runtime-only venv and never import torch or zoo.
- unset (the full environment, ``make test``): a session fixture exports the committed tiny
  fixture (tests/fixtures/export_tiny) with zoo.exporting into a temporary folder and copies
  held-out ORL faces beside it (zoo is imported inside that fixture only).

This file must not import torch or zoo at module level.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest

MODEL_ENV = "ECLOSS_RUNTIME_MODEL"
FACES_ENV = "ECLOSS_RUNTIME_FACES"
INSTALLED_ENV = "ECLOSS_RUNTIME_INSTALLED"
FACES_PER_IDENTITY = 3
IDENTITIES = 3


def installed() -> bool:
    """Whether the tests run against an installed runtime (make test-runtime): no torch, no
    zoo, ``export`` from site-packages."""
    return os.environ.get(INSTALLED_ENV) == "1"


@dataclass
class RuntimeData:
    model: Path                 # an exported model folder
    faces: Dict[str, List[Path]]  # identity -> its face files (>= 2 identities, >= 2 faces)

    def same_pair(self):
        first = next(iter(self.faces.values()))
        return first[0], first[1]

    def different_pair(self):
        a, b = list(self.faces.values())[:2]
        return a[0], b[0]


def write_faces(dest: Path) -> Path:
    """Copy faces 1..FACES_PER_IDENTITY of the first IDENTITIES held-out ORL identities (the
    tiny fixture never trained on them) to dest/s<ID>/<n>.pgm. Needs the full environment."""
    from zoo.data.orl import ORLFaces, orl_root
    root = orl_root()
    for ident in list(ORLFaces(split="heldout").identities)[:IDENTITIES]:
        (dest / f"s{ident}").mkdir(parents=True, exist_ok=True)
        for n in range(1, FACES_PER_IDENTITY + 1):
            shutil.copy(root / f"s{ident}" / f"{n}.pgm", dest / f"s{ident}" / f"{n}.pgm")
    return dest


def read_faces(folder: Path) -> Dict[str, List[Path]]:
    faces = {d.name: sorted(p for p in d.iterdir() if p.is_file())
             for d in sorted(folder.iterdir()) if d.is_dir()}
    faces = {k: v for k, v in faces.items() if len(v) >= 2}
    if len(faces) < 2:
        raise pytest.UsageError(f"{folder}: needs 2 identity folders of 2 faces or more "
                                "(python tests/runtime/conftest.py --faces DIR writes them)")
    return faces


def _export_fixture(out: Path) -> Path:
    """The committed tiny fixture exported by the torch layer (full environment only)."""
    from zoo.exporting.model_export import export_model
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "export_tiny"
    export_model(fixture, out, torchscript=False, log=None)
    return out


@pytest.fixture(scope="session")
def runtime_data(tmp_path_factory) -> RuntimeData:
    model, faces = os.environ.get(MODEL_ENV), os.environ.get(FACES_ENV)
    if installed() and not (model and faces):
        raise pytest.UsageError(f"{INSTALLED_ENV}=1 needs {MODEL_ENV} (an exported model "
                                f"folder) and {FACES_ENV} (identity folders of faces)")
    if model is None:
        model = _export_fixture(tmp_path_factory.mktemp("runtime_model"))
    if faces is None:
        faces = write_faces(tmp_path_factory.mktemp("runtime_faces"))
    return RuntimeData(model=Path(model), faces=read_faces(Path(faces)))


@pytest.fixture(scope="session")
def runtime_installed() -> bool:
    return installed()


@pytest.fixture(scope="session")
def runtime_env() -> Dict[str, str]:
    """The environment for `python -m export...` subprocesses: the same ``export`` package as
    this process (installed, or the repository's)."""
    import export
    home = str(Path(export.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=home + (os.pathsep + path if path else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write the runtime tests' faces (held-out ORL faces "
                                            "of the tiny fixture); needs the full environment.")
    p.add_argument("--faces", required=True, help="output folder (identity folders)")
    args = p.parse_args(argv)
    dest = write_faces(Path(args.faces))
    print(f"wrote {sum(len(v) for v in read_faces(dest).values())} faces to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
