"""Every GPU kernel compiles for sm_80 and sm_90a into sane machine code (no GPU needed).

Runs ``fastcodec.kernels.check`` in its ``--quick`` scope (all configs in fp16, the riskiest config
in bf16 / TF32 fp32 / IEEE fp32, both K walks, sm_80 and sm_90a, plus the CUDA C++ kernels when nvcc
is present): no spills, shared memory within the card's limit, no serialized wgmma, tensor-core
instructions on the tensor-core paths.  About a minute on 2 cores.

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
    if check.find_nvcc() is not None:  # the CUDA C++ kernels are checked whenever nvcc exists
        assert report["cuda"]["status"] == "ok", report["cuda"]
        kernels = [k for b in report["cuda"]["builds"] for k in b.get("kernels", [])]
        assert kernels and all(k["spill_stores"] == 0 for k in kernels)


def test_ptxas_log_parsing():
    """The parser reads the figures the verdict depends on (no compilation).  ptxas reports
    serialized wgmma as an info line (C7511/C7515 "Potential Performance Loss"), not a warning."""
    pytest.importorskip("triton", reason="triton is not installed")
    from fastcodec.kernels import check

    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k' for 'sm_90a'
ptxas info    : Function properties for k
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 1024 bytes smem
""" + ("ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are "
           "serialized due to insufficient register resources for the wgmma pipeline in the function 'k'\n")
    got = check.parse_ptxas_log(log)
    assert got["registers"] == 168 and got["barriers"] == 1
    assert (got["stack_bytes"], got["spill_stores"], got["spill_loads"]) == (16, 8, 4)
    assert got["static_smem_bytes"] == 1024
    assert got["wgmma_serialized"]
    r = {"arch": 90, "tensor_core_path": True, "smem_bytes": 232449, "ptx": {"wgmma": 0, "mma_sync": 4},
         **got}
    reasons = " | ".join(check.triton_verdict(r))
    for word in ("spills", "shared memory", "serialized", "no wgmma"):
        assert word in reasons
