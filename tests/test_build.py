"""Build configurations: the CPU-only build, and the CUDA module when nvcc is present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pybind11_cmake_dir() -> str:
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 is needed to configure CMake")
    return pybind11.get_cmake_dir()


@pytest.mark.slow
def test_cpu_only_build_has_no_cuda_module(tmp_path):
    """FASTCODEC_CUDA=OFF builds the coder and nothing that needs the CUDA toolkit."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = tmp_path / "build"
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(build),
        "-DFASTCODEC_CUDA=OFF",
        f"-Dpybind11_DIR={_pybind11_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    log = subprocess.run(configure, capture_output=True, text=True)
    assert log.returncode == 0, log.stdout + log.stderr
    built = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    modules = {p.name.split(".")[0] for p in build.glob("*.so")}
    assert "_rangecoder" in modules
    assert "_cuda" not in modules

    # The CPU-only module works on its own.
    probe = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import _rangecoder as r; "
        "t = r.Tables(np.array([[0, 1 << 15, 1 << 16]], np.int32), np.array([3], np.int32), "
        "np.array([0], np.int32), 16); "
        "s = np.array([0, 5, -7], np.int32); i = np.zeros(3, np.int32); "
        "assert (t.decode(t.encode(s, i), i) == s).all()"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(build)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_cuda_module_fails_cleanly_without_a_driver():
    """When the CUDA module was built, it loads and reports the absence of a GPU, no crash."""
    cuda = pytest.importorskip("fastcodec._cuda", reason="package built without CUDA")
    info = cuda.runtime_info()
    assert info["runtime_version"] >= 11000
    assert cuda.compiled_architectures(), "the build must name its architectures"
    assert all(a >= 70 for a in cuda.compiled_architectures())
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        assert info["device_count"] == 0
        assert info["status"] != 0 and info["message"]


def test_cuda_sources_are_built_when_nvcc_is_present():
    """CI has nvcc and no GPU: the default (AUTO) build must still compile the CUDA sources."""
    if os.environ.get("CI") != "true" or shutil.which("nvcc") is None:
        pytest.skip("checked in CI, where nvcc is installed")
    import importlib

    importlib.import_module("fastcodec._cuda")
