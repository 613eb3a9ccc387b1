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

Layout: :mod:`.tools` finds ptxas, nvcc and the other tools; :mod:`.variants` lists the Triton
variants and gives the verdicts; :mod:`.compile` compiles in the worker processes; :mod:`.ptxas`
parses the compilers' output; :mod:`.run` runs it all (:func:`run_check`); :mod:`.report` formats
the table and the Markdown report; ``main`` (here) is the command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .run import run_check
from .tools import find_nvcc, find_ptxas, find_source_root
from .variants import LARGE_POOL_SIZES, SMEM_LIMIT

__all__ = ["run_check", "main", "SMEM_LIMIT", "LARGE_POOL_SIZES", "find_ptxas", "find_nvcc"]

REPORT_PATH = Path("benches") / "results" / "kernel-resources.json"  # inside the source checkout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastcodec.kernels.check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="80,90",
                   help="compute capabilities, comma separated (default 80,90)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: os.cpu_count())")
    p.add_argument("--json", default=None,
                   help=f"JSON report path ('' = none; default: <source>/{REPORT_PATH} for a full "
                        "run, none for --quick)")
    p.add_argument("--source", default=None,
                   help="source checkout holding csrc/cuda (default: this package's checkout "
                        "or the cwd)")
    p.add_argument("--md", default=None, help="also write a Markdown report there")
    p.add_argument("--kernel", action="append", default=None,
                   help="Triton kernel name to check (repeatable, or comma separated); 'cuda' = "
                        "the CUDA C++ part")
    p.add_argument("--quick", action="store_true",
                   help="representative subset (the CI scope, see the module doc)")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA C++ kernels")
    p.add_argument("--sass", choices=("sample", "all", "none"), default="sample",
                   help="SASS cross-check (nvdisasm): one variant per kernel x dtype x arch "
                        "(default), all, none")
    p.add_argument("--ptxas", default=None, help="ptxas to compile with (default: Triton's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")
    a = p.parse_args(argv)
    kernels = [k for item in a.kernel for k in item.split(",") if k] if a.kernel else None
    root = Path(a.source).resolve() if a.source else find_source_root()
    json_path = a.json
    if json_path is None and not a.quick and root is not None:
        json_path = str(root / REPORT_PATH)
    command = "python -m fastcodec.kernels.check" + \
        ("" if argv is None and len(sys.argv) <= 1 else " ") + \
        " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    try:
        report = run_check(archs=[int(x) for x in a.arch.split(",") if x], jobs=a.jobs,
                           kernels=kernels, quick=a.quick, cuda=not a.no_cuda, sass=a.sass,
                           json_path=json_path or None, md_path=a.md, ptxas=a.ptxas,
                           verbose=not a.quiet, command=command.strip(), source_root=root)
    except (RuntimeError, ValueError) as e:
        print(f"[check] cannot run: {e}", file=sys.stderr)
        return 2
    if a.quiet:
        print("PASSED" if report["passed"] else "FAILED:\n" + "\n".join(report["failures"]))
    return 0 if report["passed"] else 1
