"""Parsing compiler output: ptxas ``-v`` resource reports (registers, spills, shared memory,
serialized wgmma), matrix-instruction counts in PTX and SASS, and CUDA C++ entry names."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess

_RE_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_RE_PROPS = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
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


def ptxas_warnings(lines) -> list[str]:
    """ptxas warnings, and its performance notes: ptxas reports serialized wgmma as an *info* line,
    ``ptxas info : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized
    due to insufficient register resources for the wgmma pipeline in the function '...'``."""
    return [ln.strip() for ln in lines
            if "warning" in ln.lower() or "performance loss" in ln.lower()
            or "serializ" in ln.lower()]


def _is_wgmma_serialized(warnings) -> bool:
    return any("wgmma" in w.lower() and "serializ" in w.lower() for w in warnings)


def parse_ptxas_log(log: str) -> dict:
    """ptxas -v output of a single-entry compilation (a Triton kernel)."""
    lines = log.splitlines()
    out = _parse_usage_block(lines)
    out["warnings"] = ptxas_warnings(lines)
    out["wgmma_serialized"] = _is_wgmma_serialized(out["warnings"])
    return out


def parse_ptxas_log_entries(log: str) -> list[dict]:
    """ptxas -v output of a multi-kernel compilation (nvcc -Xptxas -v): one dict per entry."""
    entries, cur, block = [], None, []

    def flush():
        if cur is not None:
            d = _parse_usage_block(block)
            d["warnings"] = ptxas_warnings(block)
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
_RE_PTX_MMA_KIND = re.compile(
    r"^\s*(?:@%p\d+\s+)?((?:wg)?mma(?:\.mma_async)?\.sync\.aligned\.[\w.]+)", re.M)
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


def demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return names
    r = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True)
    got = r.stdout.splitlines()
    return got if r.returncode == 0 and len(got) == len(names) else names


def short_kernel_name(demangled: str) -> str:
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
