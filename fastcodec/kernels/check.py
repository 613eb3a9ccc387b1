"""Standing resource check of every GPU kernel, ahead of time, on a machine without a GPU.

Run::

    python -m fastcodec.kernels.check [--quick] [--arch 80,90] [--jobs N] [--json PATH] [--md PATH]
                                      [--kernel NAME] [--no-cuda] [--sass sample|all|none]

What it does
------------
**Triton kernels** (``fastcodec.kernels.configs.KERNELS``): every kernel x tuning config x dtype
(float32, float16, bfloat16) x main-loop variant is compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` for sm_80 and sm_90 (Triton
targets ``sm_90a`` on Hopper, which is what makes ``wgmma`` available).  The variants are

* both K walks (``FLAT_K`` = False / True) for every config the registry's ``prune`` keeps for that
  dtype and arch at a large Cout, the arch's shared memory per block (``SMEM_LIMIT``) as its limit
  (the walk does not enter the prune, so both are always reachable);
* for ``conv_relu_pool``, besides the representative 2x2 window, the windows of
  ``LARGE_POOL_SIZES`` (3x3, 5x5, 7x7: 16, 32, 64 dot rows per pooled pixel), each with the configs
  the prune keeps for it (mostly the small-BLOCK_M ones);
* for float32 both dot precisions: ``DOT_TF32=True`` (the default: the launcher follows cuDNN's
  conv setting, ``torch.backends.cudnn.conv.fp32_precision`` or on older torch ``allow_tf32``, TF32
  by default) and ``DOT_TF32=False`` (IEEE fp32, taken when the user switches TF32 off).

Everything else is the registry's representative call (3x3 kernel, 2x2 max pooling / x2 upsample,
bias, channels_last with Cin, Cout multiples of 16: ``KernelSpec.hints``).

Resources come from ``ptxas -v`` -- the very ptxas run that produced the cubin (Triton's
``TRITON_DUMP_PTXAS_LOG``), or, should that log be missing, a second ``ptxas -v`` run on the PTX
with the same ptxas and flags.  Parsed: registers, stack frame, spill stores/loads, static shared
memory, and any warning about ``wgmma`` being serialized.  Shared memory per block = Triton's
dynamic shared memory (``metadata.shared``; Triton kernels allocate all of theirs dynamically) +
static shared memory reported by ptxas.

Tensor cores: a variant is a *tensor-core path* when its dot inputs are fp16/bf16 (always) or fp32
with ``DOT_TF32=True``.  IEEE fp32 (``DOT_TF32=False``) is an FMA path by design: no tensor-core
instruction can give IEEE fp32 products, so none is expected there.  On a tensor-core path the PTX
must contain ``mma.sync`` and ``ldmatrix`` on sm_80 (Triton feeds TF32 operands through ldmatrix
too; an mma without it means operands gathered by scalar shared-memory loads) and
``wgmma.mma_async`` on sm_90a (which reads its shared-memory operands directly: ldmatrix is
reported, not required).  The SASS (``nvdisasm`` of the cubin) must then contain ``HMMA`` on
sm_80 and ``HGMMA`` on sm_90a; by default (``--sass sample``) one variant per kernel x
dtype/precision x arch is disassembled (each nvdisasm run costs about half a compilation;
``--sass all`` does every variant).  The SASS counts of local-memory accesses (``LDL``/``STL``) are
reported next to ptxas's spill figures.

A variant FAILS when it does not compile, spills (spill stores or loads > 0), needs more shared
memory per block than the card allows (A100: 166912 B, H100: 232448 B; opt-in maximum) or than the
prune's estimate (``configs.smem_estimate``, which the prune compares with the device's limit at
run time: it must not underestimate), carries
ptxas's serialized-wgmma warning, or lacks the matrix instructions on a tensor-core path.  A failing
config is removed from the tuning lists in ``configs.py`` (not exempted here).

``--quick`` (the CI scope, ``tests/test_kernel_resources.py``): all kept configs for float16 (both
K walks, all archs, every pooling window) plus, for bfloat16, TF32 float32 and IEEE float32, the
single kept config with the largest estimated per-thread register footprint (accumulator + one stage
of operands) per arch and window, both K walks, all archs: 124 compilations instead of 240.
The full run covers every kept config for every dtype/precision.

**CUDA C++ kernels** (every ``.cu`` file in ``csrc/cuda`` that defines a ``__global__`` function):
compiled device-only with ``nvcc -O3 -std=c++17 -arch=sm_XX -Xptxas -v -cubin`` (the flags of the
CMake Release build, include dirs ``csrc/cuda`` plus a generated ``build_config.h``), per-entry
registers / stack / spills / shared memory parsed; fails on spills or too much shared memory.  These
are one-thread-per-output FMA kernels: no tensor-core instructions are expected.  Skipped, with a
message, when nvcc is not found.

Compilation runs in worker processes (``spawn``, ``--jobs``, default ``os.cpu_count()``) with
``TRITON_INTERPRET`` removed from their environment, a fresh Triton cache and
``TRITON_ALWAYS_COMPILE=1``, so the check is valid from inside a process that runs the Triton
interpreter (e.g. a pytest session with ``tests/ops``) and never reuses a stale cubin.

Exit status: 0 all variants pass, 1 some variant fails, 2 the tools are missing (no Triton / ptxas).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import datetime
import io
import json
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["run_check", "main", "SMEM_LIMIT", "LARGE_POOL_SIZES", "find_ptxas", "find_nvcc"]

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the checkout, for an editable install
REPORT_PATH = Path("benches") / "results" / "kernel-resources.json"  # inside the source checkout


def find_source_root() -> Path | None:
    """The source checkout whose CUDA C++ sources are checked: ``$FASTCODEC_SOURCE_DIR``, the
    folder holding this package (editable install) or the working directory, whichever has
    ``csrc/cuda``; None when there is none (an installed wheel ships no C++ sources)."""
    for cand in (os.environ.get("FASTCODEC_SOURCE_DIR"), PACKAGE_PARENT, Path.cwd()):
        if cand and (Path(cand) / "csrc" / "cuda").is_dir():
            return Path(cand).resolve()
    return None

# Maximum shared memory per block (dynamic, opt-in) by compute capability.
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPE_NAMES = ("float32", "float16", "bfloat16")


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------


def _tool_version(path: str | None) -> str | None:
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


def _find_triton_tool(name: str) -> str | None:
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


def _git(root: Path | None, *args: str) -> str | None:
    if root is None:
        return None
    try:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_RE_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_RE_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RE_REGS = re.compile(r"Used (\d+) registers")
_RE_BARRIERS = re.compile(r"used (\d+) barriers")
_RE_SMEM = re.compile(r"(\d+) bytes smem")


def _parse_usage_block(lines) -> dict:
    out = {"registers": None, "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0,
           "static_smem_bytes": 0, "barriers": 0}
    for line in lines:
        if m := _RE_PROPS.search(line):
            out["stack_bytes"] = max(out["stack_bytes"], int(m.group(1)))
            out["spill_stores"] = max(out["spill_stores"], int(m.group(2)))
            out["spill_loads"] = max(out["spill_loads"], int(m.group(3)))
        if m := _RE_REGS.search(line):
            out["registers"] = int(m.group(1))
            if b := _RE_BARRIERS.search(line):
                out["barriers"] = int(b.group(1))
            if s := _RE_SMEM.search(line):
                out["static_smem_bytes"] = int(s.group(1))
    return out


def _warnings(lines) -> list[str]:
    """ptxas warnings, and its performance notes: ptxas reports serialized wgmma as an *info* line,
    ``ptxas info : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized
    due to insufficient register resources for the wgmma pipeline in the function '...'``."""
    return [ln.strip() for ln in lines
            if "warning" in ln.lower() or "performance loss" in ln.lower() or "serializ" in ln.lower()]


def _is_wgmma_serialized(warnings) -> bool:
    return any("wgmma" in w.lower() and "serializ" in w.lower() for w in warnings)


def parse_ptxas_log(log: str) -> dict:
    """ptxas -v output of a single-entry compilation (a Triton kernel)."""
    lines = log.splitlines()
    out = _parse_usage_block(lines)
    out["warnings"] = _warnings(lines)
    out["wgmma_serialized"] = _is_wgmma_serialized(out["warnings"])
    return out


def parse_ptxas_log_entries(log: str) -> list[dict]:
    """ptxas -v output of a multi-kernel compilation (nvcc -Xptxas -v): one dict per entry."""
    entries, cur, block = [], None, []

    def flush():
        if cur is not None:
            d = _parse_usage_block(block)
            d["warnings"] = _warnings(block)
            d["wgmma_serialized"] = _is_wgmma_serialized(d["warnings"])
            entries.append({**cur, **d})

    for line in log.splitlines():
        if m := _RE_ENTRY.search(line):
            flush()
            cur, block = {"mangled": m.group(1), "target": m.group(2)}, []
        elif cur is not None:
            # Non-entry (device) functions of the same file report their properties too; they are
            # inlined in the kernels here, but a "Compiling entry" line always starts a new block.
            block.append(line)
    flush()
    return entries


_PTX_PATTERNS = {
    "mma_sync": re.compile(r"^\s*(?:@%p\d+\s+)?mma\.sync\b", re.M),
    "ldmatrix": re.compile(r"^\s*(?:@%p\d+\s+)?ldmatrix\b", re.M),
    "wgmma": re.compile(r"^\s*(?:@%p\d+\s+)?wgmma\.mma_async\b", re.M),
}
_RE_PTX_MMA_KIND = re.compile(r"^\s*(?:@%p\d+\s+)?((?:wg)?mma(?:\.mma_async)?\.sync\.aligned\.[\w.]+)", re.M)
_RE_SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_]*)")
_SASS_KEYS = ("HMMA", "HGMMA", "LDSM", "IMMA", "LDL", "STL")


def ptx_matrix_counts(ptx: str) -> dict:
    out = {k: len(p.findall(ptx)) for k, p in _PTX_PATTERNS.items()}
    out["mma_kinds"] = sorted(set(_RE_PTX_MMA_KIND.findall(ptx)))
    m = re.search(r"^\s*\.target\s+(\S+)", ptx, re.M)
    out["target"] = m.group(1) if m else None
    return out


def sass_counts(sass: str) -> dict:
    ops = collections.Counter(_RE_SASS_OP.findall(sass))
    return {k: ops.get(k, 0) for k in _SASS_KEYS}


# ---------------------------------------------------------------------------------------------
# Workers (spawned processes; TRITON_INTERPRET removed before any kernel module is imported)
# ---------------------------------------------------------------------------------------------


def _worker_init(cache_dir: str, ptxas: str | None) -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    if ptxas:
        os.environ["TRITON_PTXAS_PATH"] = ptxas
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _compile_triton(v: dict) -> dict:
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
            raise RuntimeError(f"{v['kernel']} is a {type(spec.fn).__name__} (TRITON_INTERPRET set?)")
        c = v["config"]
        cfg = triton.Config({"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"], "BLOCK_K": c["BLOCK_K"]},
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
        r = subprocess.run([ptxas, "-lineinfo", "-v", f"--gpu-name={sm_arch_from_capability(arch)}",
                            str(src), "-o", str(Path(d) / "k.cubin")], capture_output=True, text=True)
    return r.stdout + r.stderr


def _sass(cubin: bytes) -> dict | None:
    tool = _find_triton_tool("nvdisasm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "k.cubin"
        p.write_bytes(cubin)
        r = subprocess.run([tool, str(p)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return sass_counts(r.stdout)


def _compile_cuda(src: str, arch: int, nvcc: str, want_sass: bool, root: Path) -> dict:
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
            names = _demangle([e["mangled"] for e in entries])
            for e, n in zip(entries, names):
                e["kernel"] = _short_kernel_name(n)
                e["smem_bytes"] = e["static_smem_bytes"]
            out["kernels"] = entries
            out["warnings"] = _warnings(log.splitlines())
            if want_sass and entries:
                out["sass"] = _cuda_sass(cubin)
    out["compile_s"] = round(time.perf_counter() - t0, 3)
    return out


def _cuda_sass(cubin: Path) -> dict | None:
    tool = _find_triton_tool("cuobjdump")
    if tool is None:
        return None
    r = subprocess.run([tool, "-sass", str(cubin)], capture_output=True, text=True)
    return sass_counts(r.stdout) if r.returncode == 0 else None


def _demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return names
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    got = r.stdout.splitlines()
    return got if r.returncode == 0 and len(got) == len(names) else names


def _short_kernel_name(demangled: str) -> str:
    """``void ns::(anonymous namespace)::kern<T, 3, 3>(ns::Params)`` -> ``kern<T, 3, 3>``."""
    s = re.sub(r"^void\s+", "", demangled)
    depth, cut = 0, len(s)
    for i, ch in enumerate(s):  # drop the parameter list (first '(' outside template brackets)
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not s.startswith("(anonymous", i):
            cut = i
            break
    s = s[:cut]
    s = re.sub(r"^(?:[\w]+::|\(anonymous namespace\)::)+", "", s)
    return s


# ---------------------------------------------------------------------------------------------
# Variants and verdicts
# ---------------------------------------------------------------------------------------------


def _config_dict(cfg) -> dict:
    return {**{k: int(cfg.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")},
            "num_warps": int(cfg.num_warps), "num_stages": int(cfg.num_stages)}


def config_label(c: dict) -> str:
    return f"{c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']} w{c['num_warps']} s{c['num_stages']}"


def _footprint(cfg, constexprs, elsize) -> tuple:
    """Estimated per-thread registers (fp32 accumulator + one stage of A and B operands, in 32-bit
    words) and per-block shared memory: the ordering ``--quick`` uses to pick the riskiest config."""
    rows = cfg.kwargs["BLOCK_M"] * int(constexprs.get("WIN", 1))
    bn, bk, threads = cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"], 32 * cfg.num_warps
    regs = (rows * bn + (rows * bk + bk * bn) * elsize / 4) / threads
    smem = cfg.num_stages * (rows + bn) * bk * elsize
    return regs, smem


#: Pooling windows compiled besides the registry's representative 2x2 (``conv_relu_pool``): each
#: pooled pixel takes ``next_pow2(P*P)`` dot rows, so these need the small-BLOCK_M configs.
LARGE_POOL_SIZES = (3, 5, 7)


def variant_label(v: dict) -> str:
    """The kernel's name, with the pooling window when it is not the representative one."""
    return v["kernel"] + (f" pool {v['pool_size']}x{v['pool_size']}" if v.get("large_window") else "")


def enumerate_variants(kernels=None, archs=(80, 90), dtypes=DTYPE_NAMES, quick=False,
                       sass: str = "sample") -> tuple[list, list]:
    """``(variants, notes)``: the Triton compilations to run (dicts, picklable).

    Per kernel x dtype x arch, the configs the registry's prune keeps at a large Cout for that
    arch's shared memory (``SMEM_LIMIT``); for ``conv_relu_pool`` the representative 2x2 window and
    each of ``LARGE_POOL_SIZES``, whose kept configs differ (mostly the small-BLOCK_M ones).
    ``sass``: which variants also get their SASS disassembled: ``"all"``, ``"none"`` or ``"sample"``
    (the first variant of each kernel x dtype/precision x arch).
    """
    import torch
    import triton

    from fastcodec.kernels.configs import KERNELS, smem_estimate

    variants, notes, dropped = [], [], {}
    for name, spec in KERNELS.items():
        if kernels and name not in kernels:
            continue
        for dtype, (_sig, base) in spec.signatures.items():
            dname = str(dtype).replace("torch.", "")
            if dname not in dtypes:
                continue
            elsize = torch.empty(0, dtype=dtype).element_size()
            windows = [{}]
            if "POOL" in base:
                windows += [{"POOL": p, "WIN": triton.next_power_of_2(p * p)} for p in LARGE_POOL_SIZES]
            for window in windows:
                consts = {**base, **window}
                for arch in archs:
                    # Configs the registry's prune keeps at a large Cout (what a real layer can run).
                    allowed = spec.kept_configs(dtype, arch=arch, smem_limit=SMEM_LIMIT.get(arch), **window)
                    if not window:
                        for c in spec.configs:
                            if not any(c is a for a in allowed):
                                dropped.setdefault((name, config_label(_config_dict(c))), []).append(
                                    f"{dname} sm_{arch}")
                    precisions = [True, False] if dtype == torch.float32 else [bool(base.get("DOT_TF32", False))]
                    for tf32 in precisions:
                        cfgs = allowed
                        if quick and dtype != torch.float16:
                            cfgs = [max(allowed, key=lambda c: _footprint(c, consts, elsize))]
                        for cfg in cfgs:
                            for flat_k in (False, True):
                                tc = dtype != torch.float32 or tf32
                                variants.append({
                                    "kernel": name, "config": _config_dict(cfg), "dtype": dname,
                                    "constexprs": {**window, "FLAT_K": flat_k, "DOT_TF32": tf32},
                                    "k_walk": "flat" if flat_k else "tap",
                                    "precision": ("tf32" if tf32 else "ieee") if dtype == torch.float32 else dname,
                                    "arch": arch, "tensor_core_path": tc,
                                    "pool_size": consts.get("POOL"), "large_window": bool(window),
                                    "smem_estimate": smem_estimate(cfg, consts.get("WIN", 1), elsize, arch),
                                })
    for (name, label), where in dropped.items():
        notes.append(f"{name} {label}: dropped by prune for the representative call ({', '.join(where)}), "
                     "not compiled")
    if any(v["large_window"] for v in variants):
        notes.append("conv_relu_pool pool " + ", ".join(f"{p}x{p}" for p in LARGE_POOL_SIZES)
                     + ": only the configs the prune keeps for that window are compiled")
    seen = set()
    for v in variants:
        group = (v["kernel"], v["precision"], v["arch"])
        v["want_sass"] = sass == "all" or (sass == "sample" and group not in seen)
        seen.add(group)
    return variants, notes


def triton_verdict(r: dict) -> list[str]:
    """Failure reasons of one Triton variant (empty: pass)."""
    if "error" in r:
        return ["compile error: " + r["error"].splitlines()[0][:200]]
    why = []
    if r.get("registers") is None:
        why.append("no ptxas resource report")
    if r["spill_stores"] or r["spill_loads"]:
        why.append(f"spills {r['spill_stores']} B stores / {r['spill_loads']} B loads")
    limit = SMEM_LIMIT.get(r["arch"])
    if limit is not None and r["smem_bytes"] > limit:
        why.append(f"shared memory {r['smem_bytes']} B > {limit} B")
    if r.get("smem_estimate") is not None and r["smem_bytes"] > r["smem_estimate"]:
        why.append(f"shared memory {r['smem_bytes']} B > the prune's estimate {r['smem_estimate']} B")
    if r["wgmma_serialized"]:
        why.append("ptxas: wgmma serialized")
    if r["tensor_core_path"]:
        ptx, sass = r["ptx"], r.get("sass")
        if r["arch"] >= 90:
            if not ptx["wgmma"]:
                why.append("no wgmma in PTX" + (" (mma.sync instead)" if ptx["mma_sync"] else ""))
            elif sass is not None and not sass["HGMMA"]:
                why.append("no HGMMA in SASS")
        else:
            if not ptx["mma_sync"]:
                why.append("no mma.sync in PTX")
            elif not ptx["ldmatrix"]:
                why.append("mma.sync without ldmatrix in PTX")
            elif sass is not None and not sass["HMMA"]:
                why.append("no HMMA in SASS")
    return why


def cuda_verdict(k: dict, arch: int) -> list[str]:
    why = []
    if k.get("registers") is None:
        why.append("no ptxas resource report")
    if k["spill_stores"] or k["spill_loads"]:
        why.append(f"spills {k['spill_stores']} B stores / {k['spill_loads']} B loads")
    limit = SMEM_LIMIT.get(arch)
    if limit is not None and k["smem_bytes"] > limit:
        why.append(f"shared memory {k['smem_bytes']} B > {limit} B")
    return why


def _matrix_flag(r: dict) -> str:
    if "error" in r:
        return "?"
    ptx, sass = r["ptx"], r.get("sass")
    if ptx["wgmma"]:
        s = "wgmma"
    elif ptx["mma_sync"]:
        s = "mma" + ("+ldm" if ptx["ldmatrix"] else "")
    else:
        s = "no"
    if sass is not None and s != "no":
        ok = sass["HGMMA"] if ptx["wgmma"] else sass["HMMA"]
        s += "" if ok else "(!sass)"
    return s


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_check(*, archs=(80, 90), jobs: int | None = None, kernels=None, quick: bool = False,
              cuda: bool = True, sass: str = "sample", json_path=None, md_path=None, ptxas: str | None = None,
              verbose: bool = True, command: str | None = None, source_root=None) -> dict:
    """Runs the check and returns the report (``report["passed"]``); writes JSON / Markdown if asked.

    ``kernels``: Triton kernel names to check (None: all); the name ``"cuda"`` selects the CUDA C++
    part (with no other name given: only it).  Raises ``RuntimeError`` when Triton or ptxas is
    missing. ``source_root``: the checkout with ``csrc/cuda`` (default: :func:`find_source_root`).
    """
    t_start = time.perf_counter()
    root = Path(source_root).resolve() if source_root else find_source_root()
    try:
        import triton
    except ImportError as e:
        raise RuntimeError("triton is not installed") from e
    ptxas = ptxas or find_ptxas()
    if ptxas is None or not os.path.exists(ptxas):
        raise RuntimeError("ptxas not found (neither TRITON_PTXAS_PATH nor triton/backends/nvidia/bin/ptxas)")
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    archs = tuple(int(a) for a in archs)
    kernels = set(kernels) if kernels else None
    triton_names = (kernels - {"cuda"}) if kernels else None
    do_triton = kernels is None or bool(triton_names)
    do_cuda = cuda and (kernels is None or "cuda" in kernels)

    variants, notes = ([], [])
    if do_triton:
        from fastcodec.kernels.configs import KERNELS

        unknown = (triton_names or set()) - set(KERNELS)
        if unknown:
            raise ValueError(f"unknown kernel(s) {sorted(unknown)}; known: {sorted(KERNELS)} and 'cuda'")
        variants, notes = enumerate_variants(triton_names, archs, quick=quick, sass=sass)

    nvcc = find_nvcc() if do_cuda else None
    cuda_sources = []
    cuda_report: dict = {"status": "not requested"}
    if do_cuda:
        if nvcc is None or root is None:
            why = "nvcc not found" if nvcc is None else "no source checkout with csrc/cuda found"
            cuda_report = {"status": "skipped", "message": f"{why}: CUDA C++ kernels not checked"}
            if verbose:
                print("[check] " + cuda_report["message"])
        else:
            cuda_sources = sorted(str(p) for p in (root / "csrc" / "cuda").glob("*.cu")
                                  if "__global__" in p.read_text())
            cuda_report = {"status": "ok", "nvcc": nvcc, "nvcc_version": _tool_version(nvcc),
                           "sources": [os.path.relpath(s, root) for s in cuda_sources], "builds": []}

    if verbose:
        print(f"[check] {len(variants)} Triton compilations, {len(cuda_sources) * len(archs)} nvcc runs, "
              f"{jobs} worker(s), ptxas {ptxas}")

    results, cuda_builds = [], []
    with tempfile.TemporaryDirectory(prefix="fastcodec-check-") as cache_dir:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                                    initargs=(cache_dir, ptxas)) as pool:
            cuda_futs = [pool.submit(_compile_cuda, s, a, nvcc, sass != "none", root)
                         for s in cuda_sources for a in archs]
            futs = {pool.submit(_compile_triton, v): v for v in variants}
            done = 0
            for f in concurrent.futures.as_completed(futs):
                try:
                    results.append(f.result())
                except Exception as e:  # a worker died (e.g. a crash inside the compiler)
                    results.append({**futs[f], "error": f"worker failed: {type(e).__name__}: {e}"})
                done += 1
                if verbose and (done % 24 == 0 or done == len(futs)):
                    print(f"[check] compiled {done}/{len(futs)} ({time.perf_counter() - t_start:.0f} s)",
                          flush=True)
            for f, (src, arch) in zip(cuda_futs, [(s, a) for s in cuda_sources for a in archs]):
                try:
                    cuda_builds.append(f.result())
                except Exception as e:
                    cuda_builds.append({"file": os.path.relpath(src, root), "arch": arch,
                                        "error": f"worker failed: {type(e).__name__}: {e}"})

    key = {(variant_label(v), json.dumps(v["config"], sort_keys=True), v["dtype"], v["precision"], v["k_walk"],
            v["arch"]): i for i, v in enumerate(variants)}
    results.sort(key=lambda r: key[(variant_label(r), json.dumps(r["config"], sort_keys=True), r["dtype"],
                                    r["precision"], r["k_walk"], r["arch"])])
    failures = []
    for r in results:
        r["config_label"] = config_label(r["config"])
        r["matrix"] = _matrix_flag(r)
        r["fail_reasons"] = triton_verdict(r)
        r["verdict"] = "FAIL" if r["fail_reasons"] else "ok"
        if r["fail_reasons"]:
            failures.append(f"{variant_label(r)} {r['config_label']} {r['dtype']}/{r['precision']} "
                            f"{r['k_walk']}-K sm_{r['arch']}: " + "; ".join(r["fail_reasons"]))
    for b in cuda_builds:
        if "error" in b:
            b["fail_reasons"] = [b["error"].splitlines()[0]]
            failures.append(f"{b['file']} sm_{b['arch']}: " + b["error"][:500])
            continue
        if not b["kernels"]:
            b["fail_reasons"] = ["no kernels found in the ptxas report"]
            failures.append(f"{b['file']} sm_{b['arch']}: no kernels found in the ptxas report")
        for k in b["kernels"]:
            k["fail_reasons"] = cuda_verdict(k, b["arch"])
            k["verdict"] = "FAIL" if k["fail_reasons"] else "ok"
            if k["fail_reasons"]:
                failures.append(f"{b['file']} {k['kernel']} sm_{b['arch']}: " + "; ".join(k["fail_reasons"]))
    if cuda_report.get("status") == "ok":
        cuda_report["builds"] = cuda_builds

    elapsed = time.perf_counter() - t_start
    commit = _git(root, "rev-parse", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    report = {
        "tool": "fastcodec.kernels.check",
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "triton_version": triton.__version__,
        "torch_version": _torch_version(),
        "ptxas": {"path": ptxas, "version": _tool_version(ptxas)},
        "scope": "quick" if quick else "full",
        "scope_description": _scope_text(quick),
        "archs": list(archs),
        "smem_limit_bytes": {str(a): SMEM_LIMIT.get(a) for a in archs},
        "tensor_core_policy": ("fp16/bf16: always; fp32: only with DOT_TF32=True (the default, "
                               "torch.backends.cudnn.allow_tf32); IEEE fp32 is an FMA path. "
                               "sm_80 needs mma.sync + ldmatrix (PTX) and HMMA (SASS); "
                               "sm_90a needs wgmma.mma_async (PTX) and HGMMA (SASS)."),
        "jobs": jobs,
        "elapsed_s": round(elapsed, 1),
        "notes": notes,
        "passed": not failures,
        "failures": failures,
        "summary": summarize(results, cuda_builds),
        "triton": results,
        "cuda": cuda_report,
    }
    if verbose:
        print(format_table(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n")
        if verbose:
            print(f"[check] wrote {json_path}")
    if md_path:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(format_markdown(report))
        if verbose:
            print(f"[check] wrote {md_path}")
    return report


def _torch_version():
    try:
        import torch

        return torch.__version__
    except ImportError:
        return None


def _scope_text(quick: bool) -> str:
    windows = ", ".join(f"{p}x{p}" for p in LARGE_POOL_SIZES)
    full = ("every Triton kernel x every config kept by the registry's prune (per arch: its shared memory "
            "limit) x {fp16, bf16, fp32 TF32, fp32 IEEE} x {tap-major, flat} K walk x each arch, "
            f"conv_relu_pool also with {windows} pooling (the configs kept for each window); "
            "every CUDA C++ kernel instantiation x each arch")
    if not quick:
        return full
    return ("quick: all kept configs for fp16; for bf16, fp32 TF32 and fp32 IEEE only the kept config with the "
            "largest estimated per-thread register footprint (per arch and pooling window); both K walks, "
            "each arch; all CUDA C++ kernels. (Full run: " + full + ")")


def summarize(results: list, cuda_builds: list) -> list:
    groups: dict = collections.OrderedDict()
    for r in results:
        groups.setdefault((f"triton:{variant_label(r)}", r["arch"]), []).append(r)
    for b in cuda_builds:
        for k in b.get("kernels", []):
            base = k["kernel"].split("<")[0]
            groups.setdefault((f"cuda:{base}", b["arch"]), []).append(k)
    out = []
    for (name, arch), rs in groups.items():
        ok = [r for r in rs if "error" not in r and r.get("registers") is not None]
        tc = [r for r in ok if r.get("tensor_core_path")]
        row = {
            "kernel": name, "arch": arch, "variants": len(rs),
            "failed": sum(1 for r in rs if r.get("fail_reasons")),
            "registers_min": min((r["registers"] for r in ok), default=None),
            "registers_max": max((r["registers"] for r in ok), default=None),
            "spill_bytes_max": max((r["spill_stores"] + r["spill_loads"] for r in ok), default=None),
            "stack_bytes_max": max((r["stack_bytes"] for r in ok), default=None),
            "smem_bytes_min": min((r["smem_bytes"] for r in ok), default=None),
            "smem_bytes_max": max((r["smem_bytes"] for r in ok), default=None),
        }
        if name.startswith("triton:"):
            key = "wgmma" if arch >= 90 else "mma_sync"
            row["tensor_core_variants"] = len(tc)
            row["tensor_core_with_matrix_instr"] = sum(1 for r in tc if r["ptx"][key])
            row["fma_variants_with_matrix_instr"] = sum(
                1 for r in ok if not r["tensor_core_path"] and (r["ptx"]["wgmma"] or r["ptx"]["mma_sync"]))
            row["mma_kinds"] = sorted({m for r in ok for m in r["ptx"]["mma_kinds"]})
        out.append(row)
    return out


def _fmt_rows(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


_HEADER = ["kernel", "config", "dtype", "K", "arch", "regs", "spill st/ld", "stack", "smem B", "matrix", "verdict"]


def _triton_row(r) -> list:
    if "error" in r:
        return [variant_label(r), r["config_label"], r["precision"], r["k_walk"], f"sm_{r['arch']}",
                "-", "-", "-", "-", "?", "FAIL"]
    return [variant_label(r), r["config_label"], r["precision"], r["k_walk"], f"sm_{r['arch']}", r["registers"],
            f"{r['spill_stores']}/{r['spill_loads']}", r["stack_bytes"], r["smem_bytes"],
            r["matrix"] if r["tensor_core_path"] else f"{r['matrix']} (fma)", r["verdict"]]


def _cuda_rows(report) -> list:
    rows = []
    for b in report["cuda"].get("builds", []):
        if "error" in b:
            rows.append([b["file"], "-", "-", "-", f"sm_{b['arch']}", "-", "-", "-", "-", "n/a", "FAIL"])
        for k in b.get("kernels", []):
            rows.append([k["kernel"], "-", "-", "-", f"sm_{b['arch']}", k["registers"],
                         f"{k['spill_stores']}/{k['spill_loads']}", k["stack_bytes"], k["smem_bytes"],
                         "n/a (fma)", k["verdict"]])
    return rows


def _summary_rows(report) -> tuple[list, list]:
    header = ["kernel", "arch", "variants", "failed", "regs min-max", "max spill B", "max stack B",
              "smem B min-max", "matrix instr"]
    rows = []
    for s in report["summary"]:
        if s["kernel"].startswith("triton:"):
            mi = (f"{'wgmma' if s['arch'] >= 90 else 'mma.sync'} in {s['tensor_core_with_matrix_instr']}/"
                  f"{s['tensor_core_variants']} TC paths")
        else:
            mi = "none (FMA kernel)"
        rows.append([s["kernel"], f"sm_{s['arch']}", s["variants"], s["failed"],
                     f"{s['registers_min']}-{s['registers_max']}", s["spill_bytes_max"], s["stack_bytes_max"],
                     f"{s['smem_bytes_min']}-{s['smem_bytes_max']}", mi])
    return header, rows


def format_table(report) -> str:
    parts = []
    by_kernel = collections.OrderedDict()
    for r in report["triton"]:
        by_kernel.setdefault(variant_label(r), []).append(_triton_row(r))
    for name, rows in by_kernel.items():
        parts.append(f"\n== Triton {name} ==\n" + _fmt_rows(_HEADER, rows))
    if report["cuda"].get("status") == "ok":
        parts.append("\n== CUDA C++ (" + ", ".join(report["cuda"]["sources"]) + ") ==\n"
                     + _fmt_rows(_HEADER, _cuda_rows(report)))
    elif report["cuda"].get("message"):
        parts.append("\n== CUDA C++ ==\n" + report["cuda"]["message"])
    header, rows = _summary_rows(report)
    parts.append("\n== Summary ==\n" + _fmt_rows(header, rows))
    for n in report["notes"]:
        parts.append("note: " + n)
    if report["failures"]:
        parts.append(f"\nFAILED ({len(report['failures'])}):\n" + "\n".join("  " + f for f in report["failures"]))
    else:
        parts.append(f"\nPASSED ({len(report['triton'])} Triton variants, {report['scope']} scope, "
                     f"{report['elapsed_s']} s)")
    return "\n".join(parts)


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def format_markdown(report) -> str:
    cuda = report["cuda"]
    lines = [
        "# Kernel resource check",
        "",
        f"Produced by `{report['command'] or 'python -m fastcodec.kernels.check'}` on {report['date']} "
        f"(git {str(report['git_commit'])[:12]}{' + uncommitted changes' if report['git_dirty'] else ''}), "
        f"{report['elapsed_s']} s with {report['jobs']} worker(s) on a machine without a GPU.",
        "",
        f"* Triton {report['triton_version']}, ptxas {report['ptxas']['version']} (`{report['ptxas']['path']}`)",
        f"* nvcc: {cuda.get('nvcc_version') or cuda.get('message') or cuda.get('status')}",
        f"* Scope: {report['scope_description']}",
        f"* Tensor cores: {report['tensor_core_policy']}",
        "* Fails on: spills, shared memory per block above "
        + ", ".join(f"{v} B on sm_{a}" for a, v in report["smem_limit_bytes"].items())
        + " or above the prune's estimate (`configs.smem_estimate`), ptxas's serialized-wgmma warning, "
        "missing matrix instructions on a tensor-core path.",
        f"* Result: **{'PASSED' if report['passed'] else 'FAILED'}**. A config that fails is removed from "
        "(or replaced in) the tuning lists of `fastcodec/kernels/configs.py`, whose comments say which and why.",
        "",
        "## Summary (per kernel x arch)",
        "",
        _md_table(*_summary_rows(report)),
        "",
    ]
    if report["failures"]:
        lines += ["## Failures", ""] + [f"* {f}" for f in report["failures"]] + [""]
    # One row per kernel x config x dtype/precision; a column per arch x K walk.
    lines += ["## Triton variants", "",
              "Each cell: registers / spilled bytes (stores + loads) / shared memory per block in bytes; "
              "`tap` = tap-major K walk, `flat` = flattened K. `matrix`: tensor-core instructions found in the PTX "
              "(`mma` = mma.sync, `+ldm` = with ldmatrix, `wgmma` = wgmma.mma_async), per arch; `(fma)`: IEEE "
              "fp32, where none are expected. Full figures (stack, barriers, SASS counts, mma shapes) in the JSON.",
              ""]
    cols = [(a, w) for a in report["archs"] for w in ("tap", "flat")]
    grouped = collections.OrderedDict()
    for r in report["triton"]:
        grouped.setdefault((variant_label(r), r["config_label"], r["precision"]), {})[(r["arch"], r["k_walk"])] = r

    def cell(r):
        if r is None:
            return "-"
        if "error" in r:
            return "compile error"
        return f"{r['registers']} / {r['spill_stores'] + r['spill_loads']} / {r['smem_bytes']}"

    rows = []
    for (kern, cfg, prec), got in grouped.items():
        rs = list(got.values())
        matrix = " / ".join("/".join(sorted({r["matrix"] for r in rs if r["arch"] == a})) or "-"
                            for a in report["archs"])
        if not rs[0]["tensor_core_path"]:
            matrix += " (fma)"
        verdict = "ok" if all(not r["fail_reasons"] for r in rs) else "FAIL"
        rows.append([kern, cfg, prec] + [cell(got.get(c)) for c in cols] + [matrix, verdict])
    lines.append(_md_table(["kernel", "config", "dtype"] + [f"sm_{a} {w}" for a, w in cols] + ["matrix", "verdict"],
                           rows))
    lines.append("")
    if cuda.get("status") == "ok":
        n = collections.Counter(b["arch"] for b in cuda["builds"] for _ in b.get("kernels", []))
        lines += ["## CUDA C++ kernels", "",
                  f"`{cuda['builds'][0]['command']}` (and likewise per arch): "
                  + ", ".join(f"{c} entry points on sm_{a}" for a, c in sorted(n.items()))
                  + "; registers / spills / shared memory per instantiation in the JSON (`cuda.builds`), "
                  "ranges in the summary above.", ""]
    elif cuda.get("message"):
        lines += ["## CUDA C++ kernels", "", cuda["message"], ""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"* {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastcodec.kernels.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="80,90", help="compute capabilities, comma separated (default 80,90)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: os.cpu_count())")
    p.add_argument("--json", default=None,
                   help=f"JSON report path ('' = none; default: <source>/{REPORT_PATH} for a full run, "
                        "none for --quick)")
    p.add_argument("--source", default=None,
                   help="source checkout holding csrc/cuda (default: this package's checkout or the cwd)")
    p.add_argument("--md", default=None, help="also write a Markdown report there")
    p.add_argument("--kernel", action="append", default=None,
                   help="Triton kernel name to check (repeatable, or comma separated); 'cuda' = the CUDA C++ part")
    p.add_argument("--quick", action="store_true", help="representative subset (the CI scope, see the module doc)")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA C++ kernels")
    p.add_argument("--sass", choices=("sample", "all", "none"), default="sample",
                   help="SASS cross-check (nvdisasm): one variant per kernel x dtype x arch (default), all, none")
    p.add_argument("--ptxas", default=None, help="ptxas to compile with (default: Triton's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")
    a = p.parse_args(argv)
    kernels = [k for item in a.kernel for k in item.split(",") if k] if a.kernel else None
    root = Path(a.source).resolve() if a.source else find_source_root()
    json_path = a.json
    if json_path is None and not a.quick and root is not None:
        json_path = str(root / REPORT_PATH)
    command = "python -m fastcodec.kernels.check" + ("" if argv is None and len(sys.argv) <= 1 else " ") + \
        " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    try:
        report = run_check(archs=[int(x) for x in a.arch.split(",") if x], jobs=a.jobs, kernels=kernels,
                           quick=a.quick, cuda=not a.no_cuda, sass=a.sass, json_path=json_path or None,
                           md_path=a.md, ptxas=a.ptxas, verbose=not a.quiet, command=command.strip(),
                           source_root=root)
    except (RuntimeError, ValueError) as e:
        print(f"[check] cannot run: {e}", file=sys.stderr)
        return 2
    if a.quiet:
        print("PASSED" if report["passed"] else "FAILED:\n" + "\n".join(report["failures"]))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
