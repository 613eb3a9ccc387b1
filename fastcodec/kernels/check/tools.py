"""Finding the tools the check runs (the source checkout, ptxas, nvcc, Triton's nvdisasm /
cuobjdump, git) and their versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

PACKAGE_PARENT = Path(__file__).resolve().parents[3]  # the checkout, for an editable install


def find_source_root() -> Path | None:
    """The source checkout whose CUDA C++ sources are checked: ``$FASTCODEC_SOURCE_DIR``, the
    folder holding this package (editable install) or the working directory, whichever has
    ``csrc/cuda``; None when there is none (an installed wheel ships no C++ sources)."""
    for cand in (os.environ.get("FASTCODEC_SOURCE_DIR"), PACKAGE_PARENT, Path.cwd()):
        if cand and (Path(cand) / "csrc" / "cuda").is_dir():
            return Path(cand).resolve()
    return None


def tool_version(path: str | None) -> str | None:
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+), (V[\d.]+)", out)
    return f"{m.group(1)} ({m.group(2)})" if m else (out.strip().splitlines() or [None])[-1]


def find_ptxas() -> str | None:
    """The ptxas Triton compiles with (``TRITON_PTXAS_PATH`` or the one in the wheel), or None."""
    try:
        from triton import knobs

        return knobs.nvidia.ptxas.path
    except Exception:  # no triton, or no usable ptxas
        return None


def find_triton_tool(name: str) -> str | None:
    try:
        from triton import knobs

        return getattr(knobs.nvidia, name).path
    except Exception:
        return shutil.which(name)


def find_nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def git(root: Path | None, *args: str) -> str | None:
    if root is None:
        return None
    try:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None
