"""Compilation in the spawned worker processes (TRITON_INTERPRET removed before any kernel module
is imported): one Triton variant or one CUDA C++ file per call, with its resources and SASS."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from .ptxas import (demangle, parse_ptxas_log, parse_ptxas_log_entries, ptx_matrix_counts,
                    sass_counts, short_kernel_name, ptxas_warnings)
from .tools import find_triton_tool

def worker_init(cache_dir: str, ptxas: str | None) -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    if ptxas:
        os.environ["TRITON_PTXAS_PATH"] = ptxas
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def compile_triton(v: dict) -> dict:
    t0 = time.perf_counter()
    res: dict = {}
    try:
        import torch
        import triton
        from triton import knobs
        from triton.backends.compiler import GPUTarget

        from fastcodec.kernels.configs import KERNELS

        spec = KERNELS[v["kernel"]]
        if type(spec.fn).__name__ != "JITFunction":
            raise RuntimeError(
                f"{v['kernel']} is a {type(spec.fn).__name__} (TRITON_INTERPRET set?)")
        c = v["config"]
        cfg = triton.Config(
            {"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"], "BLOCK_K": c["BLOCK_K"]},
            num_warps=c["num_warps"], num_stages=c["num_stages"])
        dtype = getattr(torch, v["dtype"])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):  # TRITON_DUMP_PTXAS_LOG prints the ptxas -v log
            kernel = spec.compile(dtype, cfg, GPUTarget("cuda", v["arch"], 32), **v["constexprs"])
        log = buf.getvalue()
        ptx = kernel.asm["ptx"]
        res["ptxas_log_source"] = "triton"
        if "Used" not in log:  # no captured log: run ptxas -v on the PTX, as Triton does
            log = _ptxas_again(ptx, knobs.nvidia.ptxas.path, v["arch"])
            res["ptxas_log_source"] = "rerun"
        res.update(parse_ptxas_log(log))
        res["dynamic_smem_bytes"] = int(kernel.metadata.shared)
        res["smem_bytes"] = res["dynamic_smem_bytes"] + res["static_smem_bytes"]
        res["ptx"] = ptx_matrix_counts(ptx)
        if v.get("want_sass"):
            res["sass"] = _sass(kernel.asm["cubin"])
    except Exception as e:  # reported as a failure of this variant
        res["error"] = f"{type(e).__name__}: {e}"[:4000]
    res["compile_s"] = round(time.perf_counter() - t0, 3)
    return {**v, **res}


def _ptxas_again(ptx: str, ptxas: str, arch: int) -> str:
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        r = subprocess.run(
            [ptxas, "-lineinfo", "-v", f"--gpu-name={sm_arch_from_capability(arch)}",
             str(src), "-o", str(Path(d) / "k.cubin")], capture_output=True, text=True)
    return r.stdout + r.stderr


def _sass(cubin: bytes) -> dict | None:
    tool = find_triton_tool("nvdisasm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "k.cubin"
        p.write_bytes(cubin)
        r = subprocess.run([tool, str(p)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return sass_counts(r.stdout)


def compile_cuda(src: str, arch: int, nvcc: str, want_sass: bool, root: Path) -> dict:
    t0 = time.perf_counter()
    cuda_dir = root / "csrc" / "cuda"
    out: dict = {"file": os.path.relpath(src, root), "arch": arch}
    with tempfile.TemporaryDirectory() as d:
        gen = Path(d) / "generated"
        gen.mkdir()
        template = cuda_dir / "build_config.h.in"
        if template.exists():  # what CMake's configure_file generates (architecture list)
            (gen / "build_config.h").write_text(
                template.read_text().replace("@FASTCODEC_CUDA_ARCH_LIST@", str(arch)))
        cubin = Path(d) / "k.cubin"
        cmd = [nvcc, "-O3", "-DNDEBUG", "-std=c++17", f"-arch=sm_{arch}", "-Xptxas", "-v", "-cubin",
               f"-I{cuda_dir}", f"-I{gen}", src, "-o", str(cubin)]
        shown = [c.replace(str(d), "$TMP").replace(str(root) + os.sep, "") for c in cmd]
        out["command"] = " ".join(shlex.quote(c) if "$TMP" not in c else c for c in shown)
        r = subprocess.run(cmd, capture_output=True, text=True)
        log = r.stdout + r.stderr
        if r.returncode != 0:
            out["error"] = f"nvcc failed ({r.returncode}):\n{log[-4000:]}"
        else:
            entries = parse_ptxas_log_entries(log)
            names = demangle([e["mangled"] for e in entries])
            for e, n in zip(entries, names):
                e["kernel"] = short_kernel_name(n)
                e["smem_bytes"] = e["static_smem_bytes"]
            out["kernels"] = entries
            out["warnings"] = ptxas_warnings(log.splitlines())
            if want_sass and entries:
                out["sass"] = _cuda_sass(cubin)
    out["compile_s"] = round(time.perf_counter() - t0, 3)
    return out


def _cuda_sass(cubin: Path) -> dict | None:
    tool = find_triton_tool("cuobjdump")
    if tool is None:
        return None
    r = subprocess.run([tool, "-sass", str(cubin)], capture_output=True, text=True)
    return sass_counts(r.stdout) if r.returncode == 0 else None

