"""Builds pyvs and its C++/CUDA extension, pyvs._C.

Environment switches (printed at the start of every build):
  PYVS_CUDA=0     build the CPU kernels only, even where a CUDA toolkit exists
  PYVS_CUDA=1     require the CUDA kernels (fail if no toolkit is found)
  DEBUG=1         -O0 -g instead of -O3
  TORCH_CUDA_ARCH_LIST  GPU targets; defaults to "8.0;9.0" when no GPU is visible

By default the CUDA kernels are built whenever torch has CUDA and a CUDA
toolkit is found, GPU or not, so that a wheel built on a GPU-less machine
still runs on GPUs (and CI proves the CUDA sources compile).

Install without build isolation so that the extension is built against the
torch already installed: pip install --no-build-isolation .
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup


def _find_cuda_home():
    # An `nvcc` on PATH may be a wrapper script in /usr/local/bin; torch would
    # then guess /usr/local as the toolkit root and fail to link -lcudart.
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    for root in ("/usr/local/cuda",):
        if os.path.exists(os.path.join(root, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = root
            return


_find_cuda_home()

import torch  # noqa: E402  (after CUDA_HOME is fixed; cpp_extension reads it at import)
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

ROOT = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("DEBUG", "0") == "1"
WANT_CUDA = os.environ.get("PYVS_CUDA", "auto")


def _nvidia_pip_includes():
    """ATen's CUDA headers include cusparse.h/cublas_v2.h; a bare toolkit may
    lack them, but the nvidia-* wheels that come with torch ship them."""
    dirs = []
    try:
        import nvidia  # namespace package from the nvidia-* wheels
    except ImportError:
        return dirs
    for base in getattr(nvidia, "__path__", []):
        for sub in sorted(glob.glob(os.path.join(base, "cu*", "include"))):
            dirs.append(sub)
    return dirs


def _use_cuda():
    have = torch.version.cuda is not None and CUDA_HOME is not None
    if WANT_CUDA == "0":
        return False
    if WANT_CUDA == "1" and not have:
        sys.exit("PYVS_CUDA=1 but no CUDA toolkit (CUDA_HOME) or no CUDA build of torch was found")
    return have


class BuildExt(BuildExtension):
    """torch's BuildExtension with a fixed folder for the object files
    (build/temp.pyvs): ninja then recompiles only what changed, also across
    `pip install` runs, which otherwise build in a fresh temporary folder."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = os.path.join(ROOT, "build", "temp.pyvs")


def extensions():
    use_cuda = _use_cuda()
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    opt = ["-O0", "-g"] if DEBUG else ["-O3"]
    # No fused multiply-add in the host-side table code: its rounding must
    # match Python's floats bit for bit (see csrc/fault_model.h). No trapping
    # math: comparisons may then become selects, so that the elementwise
    # loops (csrc/cpu/requantize_kernel.cpp) vectorize; no value changes.
    cxx = opt + ["-ffp-contract=off", "-fno-trapping-math"]  # the C++ standard is torch's choice
    include_dirs = [os.path.join(ROOT, "csrc")]
    kwargs = {}
    if sys.platform.startswith("linux"):
        # at::parallel_for is OpenMP inside ATen's headers: without -fopenmp
        # the CPU kernels silently run on one thread. The libgomp that torch
        # ships is already loaded when pyvs._C is, and serves this one too.
        cxx.append("-fopenmp")
        kwargs["extra_link_args"] = ["-fopenmp"]
    if use_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        include_dirs += _nvidia_pip_includes()
        kwargs["extra_compile_args"] = {
            "cxx": cxx,
            "nvcc": opt + ["-Xcompiler", "-ffp-contract=off"],
        }
        ext = CUDAExtension
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext = CppExtension
    print(
        f"pyvs build: torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"CUDA_HOME={CUDA_HOME}, PYVS_CUDA={WANT_CUDA} -> CUDA kernels: {use_cuda}, "
        f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}, DEBUG={DEBUG}, "
        f"nvcc={shutil.which('nvcc')}",
        flush=True,
    )
    # pyvs._C uses no Python API beyond creating an empty module (the ops
    # register through the dispatcher), so it is built against CPython's
    # stable ABI: one wheel serves every Python >= 3.10.
    return [ext("pyvs._C", sources, include_dirs=include_dirs, py_limited_api=True, **kwargs)]


setup(
    name="pyvs",
    version="0.1.0",
    description="Voltage scaling and timing-error injection for systolic-array DNN accelerators",
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["pyvs", "pyvs.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
    python_requires=">=3.10",
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
    package_data={"pyvs": ["imagenet_wnids.txt"]},
    entry_points={"console_scripts": ["pyvs=pyvs.cli:main"]},
)
