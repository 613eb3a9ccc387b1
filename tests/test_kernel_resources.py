"""Every GPU kernel compiles for sm_80 and sm_90a into sane machine code (no GPU needed).

Runs ``fastcodec.kernels.check`` in its ``--quick`` scope (all configs in fp16, the riskiest config
in bf16 / TF32 fp32 / IEEE fp32, both K walks, sm_80 and sm_90a, 2x2 pooling and the large windows
3x3 / 5x5 / 7x7 with the configs the prune keeps for each, plus the CUDA C++ kernels when nvcc is
present): no spills, shared memory within the card's limit and the prune's estimate, no serialized
wgmma, tensor-core instructions on the tensor-core paths.  About two minutes on 2 cores.

AOT compilation must not see ``TRITON_INTERPRET=1`` (tests/ops sets it for its own tests): the check
compiles in spawned worker processes that drop it, and when this process has it set the whole check
runs in a subprocess without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tools_or_skip():
    pytest.importorskip("triton", reason="triton is not installed")
    from fastcodec.kernels import check

    ptxas = check.find_ptxas()
    if ptxas is None or not os.path.exists(ptxas):
        pytest.skip("ptxas not found (Triton's NVIDIA backend is not available)")
    return check


def _run_quick(check, json_path: Path) -> dict:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        cmd = [sys.executable, "-m", "fastcodec.kernels.check", "--quick", "--json", str(json_path),
               "--source", str(ROOT)]
        # Outside the checkout, so the installed package is imported, not the source tree.
        r = subprocess.run(cmd, cwd=json_path.parent, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode in (0, 1), f"check could not run ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return json.loads(json_path.read_text())
    return check.run_check(quick=True, json_path=json_path, verbose=False, source_root=ROOT,
                           command="tests/test_kernel_resources.py (quick)")


def test_kernels_compile_without_spills_and_use_tensor_cores(tmp_path):
    check = _tools_or_skip()
    from fastcodec.kernels.check.variants import config_dict, config_label

    report = _run_quick(check, tmp_path / "kernel-resources.json")

    assert report["passed"], "kernel resource check failed:\n" + "\n".join(report["failures"])

    # The check really compiled something for both architectures, with the expected targets.
    rows = report["triton"]
    assert rows, "no Triton variant compiled"
    assert {r["arch"] for r in rows} == {80, 90}
    assert {r["ptx"]["target"] for r in rows if r["arch"] == 90} == {"sm_90a"}
    assert all(r["registers"] for r in rows)
    # Every registered kernel, every dtype/precision, both K walks are covered.
    from fastcodec.kernels.configs import KERNELS

    assert {r["kernel"] for r in rows} == set(KERNELS)
    assert {r["precision"] for r in rows} == {"float16", "bfloat16", "tf32", "ieee"}
    assert {r["k_walk"] for r in rows} == {"tap", "flat"}
    # Tensor-core paths carry matrix instructions; IEEE fp32 is the FMA path.
    for r in rows:
        if r["tensor_core_path"]:
            assert r["ptx"]["wgmma" if r["arch"] >= 90 else "mma_sync"] > 0, r["config_label"]
        else:
            assert r["ptx"]["wgmma"] == 0 and r["ptx"]["mma_sync"] == 0, r["config_label"]
    # Large pooling windows (each pooled pixel takes next_pow2(P*P) dot rows) compile for every
    # config the prune keeps for them on each arch, within that arch's shared memory.
    import torch

    pool_rows = [r for r in rows if r["kernel"] == "conv_relu_pool"]
    assert {r["pool_size"] for r in pool_rows} == {2, *check.LARGE_POOL_SIZES}
    for p in check.LARGE_POOL_SIZES:
        for arch in (80, 90):
            got = [r for r in pool_rows if r["pool_size"] == p and r["arch"] == arch]
            assert {r["precision"] for r in got} == {"float16", "bfloat16", "tf32", "ieee"}, (p, arch)
            kept = KERNELS["conv_relu_pool"].kept_configs(
                torch.float16, arch=arch, smem_limit=check.SMEM_LIMIT[arch], POOL=p,
                WIN=1 << (p * p - 1).bit_length())
            assert {r["config_label"] for r in got if r["precision"] == "float16"} == {
                config_label(config_dict(c)) for c in kept}
            for r in got:
                assert r["constexprs"]["POOL"] == p and r["smem_bytes"] <= check.SMEM_LIMIT[arch]
                assert r["smem_bytes"] <= r["smem_estimate"], r
    # The estimate the prune compares with the device's limit never falls short of the compiler's.
    for r in rows:
        assert r["smem_bytes"] <= r["smem_estimate"], (r["config_label"], r["dtype"], r["arch"])
    if check.find_nvcc() is not None:  # the CUDA C++ kernels are checked whenever nvcc exists
        assert report["cuda"]["status"] == "ok", report["cuda"]
        kernels = [k for b in report["cuda"]["builds"] for k in b.get("kernels", [])]
        assert kernels and all(k["spill_stores"] == 0 for k in kernels)


def test_quick_scope_covers_large_pool_windows():
    """The variants (no compilation): every large window on every arch, each with the configs the
    prune keeps for it there, all estimated within the arch's shared memory."""
    pytest.importorskip("triton", reason="triton is not installed")
    from fastcodec.kernels import check
    from fastcodec.kernels.check.variants import enumerate_variants, triton_verdict

    for quick in (True, False):
        variants, _ = enumerate_variants(quick=quick)
        large = [v for v in variants if v["large_window"]]
        assert {(v["pool_size"], v["arch"]) for v in large} == {
            (p, a) for p in check.LARGE_POOL_SIZES for a in (80, 90)}
        for v in large:
            assert v["constexprs"]["WIN"] == 1 << (v["pool_size"] ** 2 - 1).bit_length()
            assert v["smem_estimate"] <= check.SMEM_LIMIT[v["arch"]]
            assert v["config"]["BLOCK_M"] * v["constexprs"]["WIN"] >= 64
        # The 2x2 variants are those of the representative call (tuned configs only).
        base = [v for v in variants if v["kernel"] == "conv_relu_pool" and not v["large_window"]]
        assert base and all(v["pool_size"] == 2 and v["config"]["BLOCK_M"] >= 16 for v in base)
    # A variant above the estimate fails the verdict.
    r = {"arch": 80, "tensor_core_path": False, "smem_bytes": 20000, "smem_estimate": 16384,
         "registers": 96, "spill_stores": 0, "spill_loads": 0, "wgmma_serialized": False}
    assert any("estimate" in w for w in triton_verdict(r))


def test_ptxas_log_parsing():
    """The parser reads the figures the verdict depends on (no compilation).  ptxas reports
    serialized wgmma as an info line (C7511/C7515 "Potential Performance Loss"), not a warning."""
    pytest.importorskip("triton", reason="triton is not installed")
    from fastcodec.kernels.check.ptxas import parse_ptxas_log
    from fastcodec.kernels.check.variants import triton_verdict

    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k' for 'sm_90a'
ptxas info    : Function properties for k
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 1024 bytes smem
""" + ("ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are "
           "serialized due to insufficient register resources for the wgmma pipeline in the function 'k'\n")
    got = parse_ptxas_log(log)
    assert got["registers"] == 168 and got["barriers"] == 1
    assert (got["stack_bytes"], got["spill_stores"], got["spill_loads"]) == (16, 8, 4)
    assert got["static_smem_bytes"] == 1024
    assert got["wgmma_serialized"]
    r = {"arch": 90, "tensor_core_path": True, "smem_bytes": 232449, "ptx": {"wgmma": 0, "mma_sync": 4},
         **got}
    reasons = " | ".join(triton_verdict(r))
    for word in ("spills", "shared memory", "serialized", "no wgmma"):
        assert word in reasons
