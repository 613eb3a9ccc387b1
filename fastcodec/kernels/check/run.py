"""The run: enumerates the variants, compiles them (and the CUDA C++ files) in a pool of spawned
workers, gives the verdicts and assembles the report, written as JSON / Markdown if asked."""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

from .compile import compile_cuda, compile_triton, worker_init
from .report import format_markdown, format_table, summarize
from .tools import find_nvcc, find_ptxas, find_source_root, git, tool_version
from .variants import (LARGE_POOL_SIZES, SMEM_LIMIT, config_label, cuda_verdict,
                       enumerate_variants, matrix_flag, triton_verdict, variant_label)

def run_check(*, archs=(80, 90), jobs: int | None = None, kernels=None, quick: bool = False,
              cuda: bool = True, sass: str = "sample", json_path=None, md_path=None,
              ptxas: str | None = None, verbose: bool = True, command: str | None = None,
              source_root=None) -> dict:
    """Runs the check and returns the report (``report["passed"]``); writes JSON / Markdown if
    asked.

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
        raise RuntimeError(
            "ptxas not found (neither TRITON_PTXAS_PATH nor triton/backends/nvidia/bin/ptxas)")
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
            raise ValueError(
                f"unknown kernel(s) {sorted(unknown)}; known: {sorted(KERNELS)} and 'cuda'")
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
            cuda_report = {"status": "ok", "nvcc": nvcc, "nvcc_version": tool_version(nvcc),
                           "sources": [os.path.relpath(s, root) for s in cuda_sources],
                           "builds": []}

    if verbose:
        print(f"[check] {len(variants)} Triton compilations, "
              f"{len(cuda_sources) * len(archs)} nvcc runs, {jobs} worker(s), ptxas {ptxas}")

    results, cuda_builds = [], []
    with tempfile.TemporaryDirectory(prefix="fastcodec-check-") as cache_dir:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                                    initializer=worker_init,
                                                    initargs=(cache_dir, ptxas)) as pool:
            cuda_futs = [pool.submit(compile_cuda, s, a, nvcc, sass != "none", root)
                         for s in cuda_sources for a in archs]
            futs = {pool.submit(compile_triton, v): v for v in variants}
            done = 0
            for f in concurrent.futures.as_completed(futs):
                try:
                    results.append(f.result())
                except Exception as e:  # a worker died (e.g. a crash inside the compiler)
                    results.append({**futs[f],
                                    "error": f"worker failed: {type(e).__name__}: {e}"})
                done += 1
                if verbose and (done % 24 == 0 or done == len(futs)):
                    print(f"[check] compiled {done}/{len(futs)} "
                          f"({time.perf_counter() - t_start:.0f} s)", flush=True)
            for f, (src, arch) in zip(cuda_futs, [(s, a) for s in cuda_sources for a in archs]):
                try:
                    cuda_builds.append(f.result())
                except Exception as e:
                    cuda_builds.append({"file": os.path.relpath(src, root), "arch": arch,
                                        "error": f"worker failed: {type(e).__name__}: {e}"})

    key = {(variant_label(v), json.dumps(v["config"], sort_keys=True), v["dtype"], v["precision"],
            v["k_walk"], v["arch"]): i for i, v in enumerate(variants)}
    results.sort(key=lambda r: key[(variant_label(r), json.dumps(r["config"], sort_keys=True),
                                    r["dtype"], r["precision"], r["k_walk"], r["arch"])])
    failures = []
    for r in results:
        r["config_label"] = config_label(r["config"])
        r["matrix"] = matrix_flag(r)
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
                failures.append(f"{b['file']} {k['kernel']} sm_{b['arch']}: "
                                + "; ".join(k["fail_reasons"]))
    if cuda_report.get("status") == "ok":
        cuda_report["builds"] = cuda_builds

    elapsed = time.perf_counter() - t_start
    commit = git(root, "rev-parse", "HEAD")
    dirty = git(root, "status", "--porcelain", "--untracked-files=no")
    report = {
        "tool": "fastcodec.kernels.check",
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpus": os.cpu_count()},
        "triton_version": triton.__version__,
        "torch_version": _torch_version(),
        "ptxas": {"path": ptxas, "version": tool_version(ptxas)},
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
    full = ("every Triton kernel x every config kept by the registry's prune (per arch: its shared "
            "memory limit) x {fp16, bf16, fp32 TF32, fp32 IEEE} x {tap-major, flat} K walk x each "
            f"arch, conv_relu_pool also with {windows} pooling (the configs kept for each "
            "window); every CUDA C++ kernel instantiation x each arch")
    if not quick:
        return full
    return ("quick: all kept configs for fp16; for bf16, fp32 TF32 and fp32 IEEE only the kept "
            "config with the largest estimated per-thread register footprint (per arch and pooling "
            "window); both K walks, each arch; all CUDA C++ kernels. (Full run: " + full + ")")
