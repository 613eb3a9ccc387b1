"""The fused-ops benchmark workload: shapes, variants, timing, ceilings and the summary table.

What is compared, for each shape x dtype x memory layout ("case"):

* ``fused-triton`` / ``fused-cuda`` (CUDA only): :func:`fastcodec.ops.conv_relu_pool` /
  :func:`fastcodec.ops.conv_relu_upsample` with ``backend="triton"`` / ``"cuda"`` (the latter
  with ``--ops-cuda-backend``, when the CUDA C++ extension is built);
* ``fused-torch`` (CPU): the same public functions with ``backend="torch"``, i.e. the reference
  composition called through the custom op -- its ratio to eager is the dispatch overhead;
* ``eager``: ``F.conv2d`` + ``F.relu`` + ``F.max_pool2d`` (or ``F.pixel_shuffle``);
* ``compile``: ``torch.compile`` of that eager composition (``mode="max-autotune"`` on CUDA, the
  default mode on CPU, where max-autotune is too slow), ``fullgraph=True, dynamic=False``.

Every variant is checked once against eager on the same inputs (``torch.testing.assert_close``
with dtype tolerances, :func:`tolerances`) before it is timed; nothing asserts on time.

Timing. CPU: pytest-benchmark, median round of one call (``conftest.run_benchmark``). CUDA: the
median of many calls timed with CUDA events, each call preceded by a ``torch.cuda._sleep`` that
keeps the GPU busy while the host issues it (so the events measure device time, not Python
overhead), after a warm-up that covers compilation / autotuning; the inputs rotate over several
buffers (together >= 3x the L2 cache) so that the L2 does not hold the input of the call being
timed. pytest-benchmark's own statistics on CUDA are the host wall time of one synchronous call
(call + ``torch.cuda.synchronize()``), reported as "sync ms".

Floor. ``max(min_bytes / bandwidth, flops / matrix_rate)``: ``min_bytes`` = input, weights, bias
read once and the output written once; ``flops`` = 2 x MACs of the convolution; ``bandwidth`` =
a large device-to-device copy (bytes read + written) and ``matrix_rate`` = a large
``torch.matmul`` in the case's dtype, both measured in the same session (fp32 on CUDA: with TF32
when cuDNN's convolutions may use it: ``fastcodec.kernels.conv_relu_pool.cudnn_conv_tf32``).

This module imports torch; ``conftest.py`` imports it lazily, only when ops benchmarks run.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}

# (kind, batch, Cin, conv Cout, H, W, k): conv stride 1, "same" padding; pool = max 2x2,
# upsample = pixel shuffle x2 (conv Cout = 4 x output channels).
GPU_SHAPES = [
    ("pool", 16, 3, 128, 256, 256, 5),
    ("pool", 16, 128, 128, 128, 128, 3),
    ("pool", 16, 128, 128, 64, 64, 3),
    ("pool", 16, 128, 128, 32, 32, 3),
    ("upsample", 16, 128, 512, 32, 32, 3),
    ("upsample", 16, 128, 512, 64, 64, 3),
    ("upsample", 16, 128, 512, 128, 128, 3),
]
GPU_QUICK_SHAPES = [
    ("pool", 2, 128, 128, 32, 32, 3),
    ("upsample", 2, 128, 512, 32, 32, 3),
]
CPU_SHAPES = [
    ("pool", 2, 3, 16, 64, 64, 5),
    ("pool", 2, 16, 32, 64, 64, 3),
    ("pool", 2, 32, 32, 32, 32, 3),
    ("upsample", 2, 32, 128, 32, 32, 3),
    ("upsample", 2, 16, 64, 64, 64, 3),
]
CPU_QUICK_SHAPES = [
    ("pool", 2, 3, 16, 32, 32, 5),
    ("upsample", 2, 16, 64, 16, 16, 3),
]

# (dtype, layout) combinations, in the order they run (most important first).
GPU_COMBOS = [("bf16", "cl"), ("bf16", "nchw"), ("fp16", "cl"), ("fp32", "cl"),
              ("fp16", "nchw"), ("fp32", "nchw")]
GPU_DEFAULT_COMBOS = GPU_COMBOS[:4]
GPU_QUICK_COMBOS = [("bf16", "cl")]
CPU_COMBOS = [("fp32", "nchw"), ("fp32", "cl")]
CPU_QUICK_COMBOS = [("fp32", "nchw")]

#: torch.compile modes that run the compiled graph as CUDA graphs on CUDA.
CUDAGRAPH_MODES = ("max-autotune", "reduce-overhead")

VARIANT_ORDER = ("fused-triton", "fused-cuda", "fused-torch", "eager", "compile")
FUSED_BACKENDS = {"fused-triton": "triton", "fused-cuda": "cuda", "fused-torch": "torch"}

#: Rough cost of one benchmark (seconds), used only to skip work that would overrun
#: ``--ops-deadline``: (CUDA, CPU).
EST_COST_S = {"compile": (75.0, 25.0), "fused-triton": (20.0, 5.0)}
EST_COST_DEFAULT_S = (8.0, 3.0)


# --------------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class OpsCase:
    kind: str  # "pool" or "upsample"
    n: int
    cin: int
    cout: int  # conv output channels (upsample: 4 x the output channels)
    h: int
    w: int
    k: int
    dtype: str  # key of DTYPES
    layout: str  # key of LAYOUTS
    pool_size: int = 2
    scale: int = 2

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def padding(self) -> int:
        return self.k // 2  # "same" for the odd kernels used here

    @property
    def shape_key(self) -> str:
        if self.kind == "pool":
            ch = f"{self.cin}to{self.cout}"
        else:
            ch = f"{self.cin}to{self.cout // self.scale ** 2}x{self.scale}"
        return f"{self.kind}-{ch}-k{self.k}-{self.n}x{self.h}x{self.w}"

    @property
    def id(self) -> str:
        return f"{self.shape_key}-{self.dtype}-{self.layout}"

    @property
    def label(self) -> str:
        """Short description for the summary table."""
        if self.kind == "pool":
            return f"pool {self.cin}>{self.cout} k{self.k} {self.n}x{self.h}x{self.w}"
        return (f"up {self.cin}>{self.cout // self.scale ** 2}x{self.scale} k{self.k} "
                f"{self.n}x{self.h}x{self.w}")

    @property
    def out_shape(self) -> tuple:
        if self.kind == "pool":
            p = self.pool_size
            return (self.n, self.cout, self.h // p, self.w // p)
        s = self.scale
        return (self.n, self.cout // (s * s), self.h * s, self.w * s)

    @property
    def flops(self) -> int:
        """2 x multiply-accumulates of the convolution (stride 1, same padding; bias, ReLU,
        pooling not counted)."""
        return 2 * self.n * self.cout * self.h * self.w * self.cin * self.k * self.k

    @property
    def min_bytes(self) -> int:
        """Input, weight and bias read once, output written once."""
        el = torch.empty((), dtype=self.torch_dtype).element_size()
        elems = (self.n * self.cin * self.h * self.w + self.cout * self.cin * self.k * self.k
                 + self.cout + math.prod(self.out_shape))
        return el * elems

    @property
    def input_bytes(self) -> int:
        el = torch.empty((), dtype=self.torch_dtype).element_size()
        return el * self.n * self.cin * self.h * self.w


@dataclass
class Settings:
    device: str  # "cuda" or "cpu"
    quick: bool
    combos: list
    compile_enabled: bool
    compile_mode: str
    compile_note: Optional[str]  # why compile is skipped / changed (shown in the summary)
    deadline: Optional[float]  # time.time() after which nothing more starts
    rounds: Optional[int]
    threads: Optional[int] = None  # torch CPU threads (CPU runs); None: torch's default
    cuda_backend: bool = False  # also time backend="cuda" (the CUDA C++ kernels)


def _split(value: Optional[str]) -> Optional[list]:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def settings_from_config(config) -> Settings:
    """Reads the ``--ops-*`` options (see conftest.py) and the machine."""
    quick = bool(config.getoption("--quick"))
    requested = config.getoption("--ops-device")
    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = requested
    if device == "cuda" and not torch.cuda.is_available():
        raise pytest_usage_error("--ops-device cuda: torch sees no CUDA device")
    dtypes, layouts = _split(config.getoption("--ops-dtypes")), _split(config.getoption("--ops-layouts"))
    for d in dtypes or []:
        if d not in DTYPES:
            raise pytest_usage_error(f"--ops-dtypes: unknown dtype {d!r} (use {', '.join(DTYPES)})")
    for lay in layouts or []:
        if lay not in LAYOUTS:
            raise pytest_usage_error(f"--ops-layouts: unknown layout {lay!r} (use {', '.join(LAYOUTS)})")
    if device == "cuda":
        base = GPU_QUICK_COMBOS if quick else GPU_DEFAULT_COMBOS
        universe = GPU_COMBOS
    else:
        base = CPU_QUICK_COMBOS if quick else CPU_COMBOS
        universe = [(d, lay) for d in DTYPES for lay in LAYOUTS]
    if dtypes or layouts:
        combos = [(d, lay) for d, lay in universe
                  if (dtypes is None or d in dtypes) and (layouts is None or lay in layouts)]
        if dtypes and not layouts:  # a dtype list alone keeps the default layouts
            default_layouts = {lay for _, lay in base}
            combos = [c for c in combos if c[1] in default_layouts]
    else:
        combos = list(base)
    mode = config.getoption("--ops-compile-mode")
    note = None
    if mode is None:
        mode = "max-autotune" if device == "cuda" else "default"
        if device == "cpu":
            note = "CPU: torch.compile in the default mode (max-autotune on CPU is too slow)"
    enabled = not config.getoption("--ops-no-compile")
    if not enabled:
        note = "torch.compile skipped (--ops-no-compile)"
    elif quick:
        enabled = False
        note = "torch.compile skipped in --quick (its compile time would dominate the run)"
    deadline = config.getoption("--ops-deadline")
    threads = config.getoption("--ops-threads")
    if threads is None and device == "cpu":
        threads = 1
    if threads is not None and threads <= 0:
        threads = None  # torch's default
    return Settings(device, quick, combos, enabled, mode, note, deadline,
                    config.getoption("--ops-rounds"), threads,
                    bool(config.getoption("--ops-cuda-backend")))


def pytest_usage_error(message: str):
    import pytest

    return pytest.UsageError(message)


def build_plan(settings: Settings) -> list:
    """``[(case, variant)]`` in execution order: the first dtype/layout combination (the
    headline, bf16 channels_last on CUDA) complete, then every other case's cheap variants
    (eager and fused), then their torch.compile variants -- so that with a deadline it is
    compilation of the less important combinations that gets cut first."""
    if settings.device == "cuda":
        shapes = GPU_QUICK_SHAPES if settings.quick else GPU_SHAPES
        fused = ["fused-triton"] + (["fused-cuda"] if settings.cuda_backend else [])
    else:
        shapes = CPU_QUICK_SHAPES if settings.quick else CPU_SHAPES
        fused = ["fused-torch"]
    groups = [[OpsCase(kind, n, cin, cout, h, w, k, dtype, layout)
               for kind, n, cin, cout, h, w, k in shapes]
              for dtype, layout in settings.combos]
    plan = []
    for group in groups[:1]:
        plan += [(c, v) for c in group for v in ["eager", *fused]]
        plan += [(c, "compile") for c in group]
    rest = [c for group in groups[1:] for c in group]
    plan += [(c, v) for c in rest for v in ["eager", *fused]]
    plan += [(c, "compile") for c in rest]
    return plan


# --------------------------------------------------------------------------------------------
# inputs and variants


def tolerances(dtype: torch.dtype, device_type: str) -> dict:
    """``assert_close`` tolerances of a variant against eager, both computed in ``dtype``.

    Outputs are O(1) (weights scaled by 1/sqrt(fan_in)); the two results differ by the
    accumulation order and by the final rounding to ``dtype`` (the fused kernels round once,
    eager after the convolution), i.e. up to about one unit in the last place of the dtype.
    fp32 on CUDA uses TF32 products in both when cuDNN's convolutions may (the default).
    """
    if dtype == torch.float32:
        if device_type == "cuda" and _cudnn_conv_tf32():
            return {"rtol": 2e-2, "atol": 2e-2}
        return {"rtol": 1e-4, "atol": 1e-4}
    if dtype == torch.float16:
        return {"rtol": 1e-2, "atol": 1e-2}
    if dtype == torch.bfloat16:
        return {"rtol": 5e-2, "atol": 5e-2}
    raise ValueError(dtype)


@dataclass
class CaseData:
    case: OpsCase
    xs: list  # rotated input buffers
    weight: torch.Tensor
    bias: torch.Tensor
    ref: torch.Tensor  # eager output on xs[0]

    @property
    def rotated_bytes(self) -> int:
        return len(self.xs) * self.case.input_bytes


def make_case_data(case: OpsCase, device: torch.device, n_buffers: int, seed: int = 0) -> CaseData:
    """Random inputs (never zeros), weights ~ N(0, 1/fan_in) so outputs are O(1)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    dt, fmt = case.torch_dtype, LAYOUTS[case.layout]
    xs = []
    for _ in range(n_buffers):
        x = torch.randn((case.n, case.cin, case.h, case.w), generator=gen, device=device)
        xs.append(x.to(dt).contiguous(memory_format=fmt))
    fan_in = case.cin * case.k * case.k
    weight = (torch.randn((case.cout, case.cin, case.k, case.k), generator=gen, device=device)
              / math.sqrt(fan_in)).to(dt)
    bias = (0.1 * torch.randn((case.cout,), generator=gen, device=device)).to(dt)
    with torch.no_grad():
        ref = eager_fn(case, weight, bias)(xs[0])
    return CaseData(case, xs, weight, bias, ref)


def eager_fn(case: OpsCase, weight, bias) -> Callable:
    """A fresh function object per call (torch.compile gets its own)."""
    pad, p, s = case.padding, case.pool_size, case.scale
    if case.kind == "pool":
        def eager_conv_relu_pool(x):
            return F.max_pool2d(F.relu(F.conv2d(x, weight, bias, 1, pad)), p)

        return eager_conv_relu_pool

    def eager_conv_relu_upsample(x):
        return F.pixel_shuffle(F.relu(F.conv2d(x, weight, bias, 1, pad)), s)

    return eager_conv_relu_upsample


def fused_fn(case: OpsCase, weight, bias, backend: str) -> Callable:
    from fastcodec.ops import conv_relu_pool, conv_relu_upsample

    pad, p, s = case.padding, case.pool_size, case.scale
    if case.kind == "pool":
        return lambda x: conv_relu_pool(x, weight, bias, stride=1, padding=pad, pool="max",
                                        pool_size=p, backend=backend)
    return lambda x: conv_relu_upsample(x, weight, bias, padding=pad, scale=s, backend=backend)


def compiled_fn(case: OpsCase, weight, bias, mode: str, device_type: str) -> Callable:
    """``torch.compile`` of the eager composition, compiled on its first call.

    Dynamo's caches are reset first: one compiled function per case, never a recompilation
    (``dynamic=False``; the cache limit cannot silently send it back to eager) and no CUDA-graph
    pool of an earlier case kept alive. With CUDA graphs (max-autotune on CUDA) each call is
    marked as a new step, so earlier (discarded) outputs may be overwritten.
    """
    torch._dynamo.reset()
    compiled = torch.compile(eager_fn(case, weight, bias), mode=None if mode == "default" else mode,
                             fullgraph=True, dynamic=False)
    if device_type == "cuda" and mode in CUDAGRAPH_MODES:
        mark = torch.compiler.cudagraph_mark_step_begin

        def run(x):
            mark()
            return compiled(x)

        return run
    return compiled


def variant_unavailable(variant: str, device_type: str) -> Optional[str]:
    """Why a variant cannot run here (None when it can)."""
    from fastcodec.ops import _backend

    if variant == "fused-triton" and not _backend.triton_available():
        return "Triton or the fastcodec Triton kernels cannot be imported"
    if variant == "fused-cuda" and not _backend.cuda_ops_available():
        return ("the CUDA C++ extension is not available (fastcodec.kernels.cuda_ops."
                "is_available() is False: package built without nvcc?)")
    if variant in ("fused-triton", "fused-cuda") and device_type != "cuda":
        return "needs a CUDA device"
    return None


def build_variant(case: OpsCase, variant: str, data: CaseData, settings: Settings,
                  device_type: str) -> Callable:
    w, b = data.weight, data.bias
    if variant == "eager":
        return eager_fn(case, w, b)
    if variant == "compile":
        return compiled_fn(case, w, b, settings.compile_mode, device_type)
    return fused_fn(case, w, b, FUSED_BACKENDS[variant])


def check_against_eager(out: torch.Tensor, data: CaseData, device_type: str) -> None:
    ref = data.ref
    assert tuple(out.shape) == tuple(ref.shape), (tuple(out.shape), tuple(ref.shape))
    assert out.dtype == ref.dtype, (out.dtype, ref.dtype)
    torch.testing.assert_close(out, ref, **tolerances(ref.dtype, device_type))


# --------------------------------------------------------------------------------------------
# timing (CUDA)


def sleep_cycles_per_us() -> float:
    """Clock rate of ``torch.cuda._sleep`` (cycles per microsecond), measured."""
    torch.cuda._sleep(1000)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    rates = []
    for _ in range(3):
        start.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        if ms > 0:
            rates.append(2_000_000 / (ms * 1000.0))
    return statistics.median(rates) if rates else 1500.0


@dataclass
class CudaTiming:
    median_ms: float
    min_ms: float
    p10_ms: float
    p90_ms: float
    reps: int
    sleep_us: float
    host_issue_us: float  # host time to issue one call (GPU idle before it)
    sync_call_ms: float  # one call + synchronize, from the warm-up
    times_ms: list = field(repr=False, default_factory=list)

    @property
    def host_bound(self) -> bool:
        """Issuing the call takes the host longer than the GPU takes to run it: called in a
        loop (without CUDA graphs) it runs at the host's pace, not the GPU's."""
        return self.host_issue_us * 1e-3 > self.median_ms


def time_cuda(fn: Callable, xs: list, *, cycles_per_us: float, warmup: int = 5,
              target_s: float = 0.3, min_reps: int = 25, max_reps: int = 200) -> CudaTiming:
    """Median device time of ``fn(x)`` with CUDA events, ``x`` rotating over ``xs``.

    Before each timed call a ``torch.cuda._sleep`` kernel (1.5x the measured host issue time,
    at least 50 us) is queued: the GPU is still busy with it when the start event, the call's
    kernels and the end event are issued, so the events bracket device work only.
    """
    n = len(xs)
    issue, full = [], []
    for i in range(max(warmup, 3)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(xs[i % n])
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        del out
        issue.append(t1 - t0)
        full.append(t2 - t0)
    host_us = statistics.median(issue[-3:]) * 1e6
    sync_s = statistics.median(full[-3:])
    sleep_us = min(max(50.0, 1.5 * host_us + 20.0), 20_000.0)
    cycles = max(1, int(sleep_us * cycles_per_us))
    reps = int(min(max(target_s / (sync_s + sleep_us * 1e-6), min_reps), max_reps))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    torch.cuda.synchronize()
    for i in range(reps):
        torch.cuda._sleep(cycles)
        starts[i].record()
        fn(xs[i % n])
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    return CudaTiming(statistics.median(times), times[0], q(0.1), q(0.9), reps, sleep_us,
                      host_us, sync_s * 1e3, times)


def cuda_memory(fn: Callable, x: torch.Tensor, base: int) -> tuple:
    """``(peak, held)`` bytes above ``base`` (memory allocated before the variant was built):
    the peak during one steady-state call (output included), and what stays allocated after
    it once the output is dropped (e.g. torch.compile's CUDA-graph pool)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn(x)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    held = torch.cuda.memory_allocated() - base
    return max(peak, held, 0), max(held, 0)


def n_buffers(case: OpsCase, cache_bytes: int, max_total: int) -> int:
    """How many input buffers to rotate: together at least 3x the cache (2 at least, 32 at
    most, and no more than ``max_total`` bytes)."""
    need = math.ceil(3 * cache_bytes / max(1, case.input_bytes))
    cap = max(2, max_total // max(1, case.input_bytes))
    return int(min(max(need, 2), 32, cap))


# --------------------------------------------------------------------------------------------
# ceilings


def _cudnn_conv_tf32() -> bool:
    from fastcodec.kernels.conv_relu_pool import cudnn_conv_tf32  # imports Triton: CUDA runs only

    return cudnn_conv_tf32()


@contextlib.contextmanager
def _matmul_tf32(enabled: bool):
    old = torch.get_float32_matmul_precision()  # the public switch ("high": TF32 allowed)
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _time_device(fn: Callable, device_type: str, reps: int, warmup: int = 2) -> float:
    """Best (shortest) seconds of ``fn()`` over ``reps`` runs (CUDA events on CUDA,
    perf_counter on CPU): a ceiling is what the machine can do, not what it does on average."""
    for _ in range(warmup):
        fn()
    times = []
    if device_type == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) * 1e-3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(times)


#: Sizes of the ceiling measurements, ``{kind: ((quick copy MiB, matmul n), (full ...))}``.
CEILING_SIZES = {"cuda": ((256, 4096), (1024, 8192)), "cpu": ((32, 512), (128, 2048))}


def measure_bandwidth(device: torch.device, quick: bool, kind: Optional[str] = None) -> dict:
    """Device-to-device copy bandwidth, bytes read + written per second (``kind``: how to
    time, "cuda" or "cpu"; the device's type by default)."""
    kind = kind or device.type
    nbytes = CEILING_SIZES[kind][0 if quick else 1][0] * 2**20
    reps = 10 if kind == "cuda" else 5
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    seconds = _time_device(lambda: dst.copy_(src), kind, reps)
    del src, dst
    return {"bytes": nbytes, "seconds": seconds, "bytes_per_s": 2 * nbytes / seconds}


def measure_matrix_rate(device: torch.device, dtype: torch.dtype, quick: bool,
                        kind: Optional[str] = None) -> dict:
    """FLOP/s of a large ``torch.matmul`` in ``dtype`` on random data (fp32 on CUDA: TF32
    allowed exactly when cuDNN's convolutions use it)."""
    kind = kind or device.type
    n = CEILING_SIZES[kind][0 if quick else 1][1]
    reps = 10 if kind == "cuda" else 5
    gen = torch.Generator(device=device).manual_seed(1)
    a = torch.randn((n, n), generator=gen, device=device).to(dtype)
    b = torch.randn((n, n), generator=gen, device=device).to(dtype)
    tf32 = kind == "cuda" and dtype == torch.float32 and _cudnn_conv_tf32()
    ctx = _matmul_tf32(True) if tf32 else contextlib.nullcontext()
    with ctx:
        seconds = _time_device(lambda: torch.matmul(a, b), kind, reps)
    del a, b
    return {"n": n, "seconds": seconds, "flop_per_s": 2 * n**3 / seconds, "tf32": tf32}


# --------------------------------------------------------------------------------------------
# machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _llc_bytes() -> int:
    """Last-level cache of cpu0 from sysfs (32 MiB if unknown)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size")) as fh:
                    text = fh.read().strip().upper()
                mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
                best = max(best, int(text.rstrip("KMG")) * mult)
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return best or 32 * 2**20


def _nvidia_smi(query: str) -> Optional[str]:
    try:
        run = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if run.returncode != 0 or not run.stdout.strip():
        return None
    return run.stdout.strip().splitlines()[0]


def describe_machine(device: torch.device) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - any broken install
        triton_version = "not importable"
    info = {
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["sms"] = props.multi_processor_count
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["l2_bytes"] = int(getattr(props, "L2_cache_size", 0) or 0)
        info["capability"] = f"{props.major}.{props.minor}"
        info["driver"] = _nvidia_smi("driver_version") or "unknown (nvidia-smi failed)"
        info["clocks"] = _nvidia_smi("clocks.sm,clocks.max.sm,clocks.mem") or "unknown"
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = (f"cudnn conv tf32={_cudnn_conv_tf32()}, "
                        f"matmul precision={torch.get_float32_matmul_precision()}")
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    else:
        info["llc_bytes"] = _llc_bytes()
    return info


def machine_lines(info: dict) -> list:
    lines = []
    if "gpu" in info:
        lines.append(
            f"device: {info['gpu']} (sm_{info['capability'].replace('.', '')}, {info['sms']} SMs, "
            f"{info['gpu_memory_gib']} GiB, L2 {info['l2_bytes'] / 2**20:.0f} MiB), driver "
            f"{info['driver']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}; clocks sm/max/mem "
            f"at start: {info['clocks']}")
        lines.append(f"flags: {info['tf32']}, cudnn.benchmark={info['cudnn_benchmark']}")
    lines.append(f"host: {info['cpu']} (torch threads {torch.get_num_threads()}); python "
                 f"{info['python']}, torch {info['torch']}, triton {info['triton']}")
    return lines


# --------------------------------------------------------------------------------------------
# the session's state


class OpsEnv:
    """Session-wide state of the ops benchmarks: settings, machine, measured ceilings, the
    inputs of the current case and the results (``kind``: "cuda" or "cpu", how to time)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = torch.device(settings.device)
        self.kind = self.device.type
        self.started = time.time()
        if self.kind == "cuda":
            # Eager gets cuDNN's best algorithm per shape (what a tuned deployment sets).
            torch.backends.cudnn.benchmark = True
        elif settings.threads:
            # On a small shared machine, OpenMP threads waiting for a core that another process
            # holds turn a 0.25 ms convolution into 32 ms (seen on the 2-core CI box): one thread
            # by default, which also isolates the dispatch overhead this group measures on CPU.
            torch.set_num_threads(settings.threads)
        self.machine = describe_machine(self.device)
        self.results: dict = {}  # (case id, variant) -> extra_info dict
        self.cases: dict = {}  # case id -> OpsCase
        self.bandwidth: Optional[dict] = None
        self.rates: dict = {}  # dtype name -> measure_matrix_rate() dict
        self._data: Optional[CaseData] = None
        self._cycles_per_us: Optional[float] = None

    # ceilings ------------------------------------------------------------------------------
    def ceilings(self, dtype: str) -> tuple:
        """``(bytes/s, FLOP/s)`` for ``dtype``, measured once per session."""
        if self.bandwidth is None:
            self.bandwidth = measure_bandwidth(self.device, self.settings.quick, self.kind)
        if dtype not in self.rates:
            self.rates[dtype] = measure_matrix_rate(self.device, DTYPES[dtype], self.settings.quick,
                                                    self.kind)
        return self.bandwidth["bytes_per_s"], self.rates[dtype]["flop_per_s"]

    @property
    def cycles_per_us(self) -> float:
        if self._cycles_per_us is None:
            self._cycles_per_us = sleep_cycles_per_us()
        return self._cycles_per_us

    # inputs ----------------------------------------------------------------------------------
    def case_data(self, case: OpsCase) -> CaseData:
        """The current case's inputs (only one case is kept: the GPU shapes are large)."""
        if self._data is not None and self._data.case == case:
            return self._data
        self._data = None
        gc.collect()
        if self.kind == "cuda":
            torch.cuda.empty_cache()
            cache = self.machine.get("l2_bytes") or 50 * 2**20
            max_total = 2 * 2**30
        else:
            cache = self.machine.get("llc_bytes") or 32 * 2**20
            max_total = 256 * 2**20
        n = n_buffers(case, cache, max_total)
        self._data = make_case_data(case, self.device, n)
        self.cases[case.id] = case
        return self._data

    # budget ----------------------------------------------------------------------------------
    def over_budget(self, variant: str) -> Optional[str]:
        deadline = self.settings.deadline
        if deadline is None:
            return None
        est = EST_COST_S.get(variant, EST_COST_DEFAULT_S)[0 if self.kind == "cuda" else 1]
        left = deadline - time.time()
        if left < est:
            return (f"time budget (--ops-deadline) reached: {max(left, 0):.0f} s left, "
                    f"~{est:.0f} s needed")
        return None

    # results ---------------------------------------------------------------------------------
    def record(self, case: OpsCase, variant: str, seconds: float, info: dict) -> dict:
        bw, rate = self.ceilings(case.dtype)
        floor = max(case.min_bytes / bw, case.flops / rate)
        info.update({
            "group": "ops",
            "case": case.id,
            "op": case.kind,
            "variant": variant,
            "dtype": case.dtype,
            "layout": case.layout,
            "device": self.kind,
            "seconds": seconds,
            "ms": seconds * 1e3,
            "flops": case.flops,
            "min_bytes": case.min_bytes,
            "GB_per_s": case.min_bytes / seconds / 1e9,
            "TFLOP_per_s": case.flops / seconds / 1e12,
            "floor_ms": floor * 1e3,
            "floor_bound": "memory" if case.min_bytes / bw >= case.flops / rate else "compute",
            "x_floor": seconds / floor,
            "bandwidth_GB_per_s": bw / 1e9,
            "matrix_TFLOP_per_s": rate / 1e12,
        })
        if variant == "compile":
            info["compile_mode"] = self.settings.compile_mode
        self.results[(case.id, variant)] = info
        fill_ratios(self.results)
        return info


def fill_ratios(results: dict) -> None:
    """``speedup_vs_eager`` = eager time / this time, ``speedup_vs_compile`` likewise (same
    case): > 1 means faster than the reference."""
    for (case_id, variant), info in results.items():
        for ref in ("eager", "compile"):
            other = results.get((case_id, ref))
            if other is not None and variant != ref:
                info[f"speedup_vs_{ref}"] = other["seconds"] / info["seconds"]


# --------------------------------------------------------------------------------------------
# summary


def _fmt(value, spec: str, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{format(value, spec):>{width}}"


def _sig(value: Optional[float], width: int) -> str:
    """3 significant digits without exponent for the usual ranges."""
    if value is None:
        return f"{'-':>{width}}"
    if value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    elif value >= 1:
        text = f"{value:.2f}"
    elif value >= 0.01:
        text = f"{value:.3f}"
    else:
        text = f"{value:.2g}"
    return f"{text:>{width}}"


def _rate(flop_per_s: float) -> str:
    if flop_per_s >= 1e12:
        return f"{flop_per_s / 1e12:.1f} TFLOP/s"
    return f"{flop_per_s / 1e9:.1f} GFLOP/s"


def summary_lines(env: Optional[OpsEnv], skips: dict, disturbed_cores: float = 0.15) -> list:
    """The ops summary; ``disturbed_cores``: above this many cores' worth of CPU used by other
    processes while a CPU benchmark ran, it is flagged (conftest.DISTURBED_CORES)."""
    if env is None:
        return [f"skipped {k}: {r}" for k, r in skips.items()]
    results = env.results
    fill_ratios(results)
    s = env.settings
    lines = machine_lines(env.machine)
    if env.bandwidth is not None:
        rates = ", ".join(
            f"{d}{' (tf32)' if r['tf32'] else ''} {_rate(r['flop_per_s'])}"
            for d, r in env.rates.items())
        lines.append(
            f"ceilings measured this run (best of 5-10): copy "
            f"{env.bandwidth['bytes_per_s'] / 1e9:.0f} GB/s "
            f"(read+write, {env.bandwidth['bytes'] / 2**20:.0f} MiB); matmul "
            f"{next(iter(env.rates.values()))['n'] if env.rates else '-'}^3: {rates}")
    if env.kind == "cuda":
        lines.append(
            "ms: median device time (CUDA events, GPU kept busy while each call is issued, "
            "inputs rotated over buffers >= 3x L2); sync ms: host wall time of one call + "
            "synchronize (pytest-benchmark median); peak MB: max_memory_allocated during one "
            "call above what was allocated before the variant was built (output included)")
    else:
        lines.append("ms: median round of one call (pytest-benchmark, wall clock), inputs "
                     "rotated over several buffers")
    lines.append("floor = max(min bytes / copy bandwidth, FLOPs / matmul rate) (min bytes: "
                 "input + weights read once, output written once; FLOPs: 2 x conv MACs); "
                 "x floor = ms / floor ms; vs eager / vs compile = their ms / this ms "
                 "(> 1: this variant is faster)")
    cuda = env.kind == "cuda"  # sync ms and peak MB exist on CUDA only
    header = (f"{'case':<30}{'dtype':<6}{'layout':<7}{'variant':<14}{'ms':>9}"
              + (f"{'sync ms':>9}" if cuda else "")
              + f"{'GB/s':>8}{'TFLOP/s':>9}{'floor ms':>10}{'x floor':>8}{'vs eager':>9}"
              f"{'vs comp':>8}" + (f"{'peak MB':>9}" if cuda else ""))
    lines.append(header)
    lines.append("-" * len(header))
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    seen_cases = []
    for case_id, _ in results:
        if case_id not in seen_cases:
            seen_cases.append(case_id)
    for case_id in seen_cases:
        case = env.cases[case_id]
        rows = sorted(((v, info) for (cid, v), info in results.items() if cid == case_id),
                      key=lambda r: order.get(r[0], 99))
        for variant, info in rows:
            name = variant
            if variant == "compile":
                name = "compile-ma" if info.get("compile_mode") == "max-autotune" else "compile"
            peak = info.get("peak_bytes")
            lines.append(
                f"{case.label:<30}{case.dtype:<6}{case.layout:<7}{name:<14}"
                f"{_sig(info['ms'], 9)}" + (_sig(info.get("sync_ms"), 9) if cuda else "")
                + f"{_sig(info['GB_per_s'], 8)}{_sig(info['TFLOP_per_s'], 9)}"
                f"{_sig(info['floor_ms'], 10)}{_sig(info['x_floor'], 8)}"
                f"{_fmt(info.get('speedup_vs_eager'), '.2f', 9)}"
                f"{_fmt(info.get('speedup_vs_compile'), '.2f', 8)}"
                + (_sig(None if peak is None else peak / 2**20, 9) if cuda else "")
                + ("  host-bound" if info.get("host_bound") else ""))
    if any(info["x_floor"] < 1 for info in results.values()):
        lines.append("x floor < 1: faster than the floor from the measured ceilings, i.e. the "
                     "copy / matmul used as ceilings are not the best this machine can do (on CPU, "
                     "oneDNN's convolutions can outrun one torch.matmul)")
    if any(info.get("host_bound") for info in results.values()):
        lines.append("host-bound: issuing the call takes the host longer than the GPU work "
                     "(host_issue_us in the JSON); in a plain Python loop it runs at the host's "
                     "pace")
    lines.extend(_target_lines(env))
    if s.compile_note:
        lines.append(f"note: {s.compile_note}")
    if env.kind == "cuda":
        lines.append("note: fp32 runs use TF32 tensor cores where cuDNN's convolutions may "
                     "(PyTorch's default: torch.backends.cudnn.conv.fp32_precision, or "
                     "allow_tf32 on older torch; the fused kernels follow the same setting), and "
                     "the fp32 floor uses the TF32 matmul rate")
        if not s.cuda_backend:
            lines.append("note: the CUDA C++ backend (backend='cuda', a direct convolution that "
                         "is not the default) is not timed; --ops-cuda-backend adds it")
        if any(v == "compile" for _, v in results) and s.compile_mode in CUDAGRAPH_MODES:
            lines.append(f"note: torch.compile {s.compile_mode} runs as CUDA graphs: each call also "
                         "copies its (non-static) input into the graph's input buffer")
    else:
        lines.append("note: fused-torch is the reference composition called through "
                     "torch.ops.fastcodec (argument checks + custom-op dispatch): its ratio to "
                     "eager is that overhead; the Triton / CUDA kernels run only on CUDA")
    disturbed = [f"{env.cases[cid].label} {env.cases[cid].layout} {v} ({info['other_load_cores']:.2f})"
                 for (cid, v), info in results.items()
                 if env.kind == "cpu" and (info.get("other_load_cores") or 0) > disturbed_cores]
    if disturbed:
        lines.append(f"WARNING: other processes used > {disturbed_cores} cores while timing "
                     + ", ".join(disturbed) + "; those numbers are unreliable")
    for key, reason in skips.items():
        lines.append(f"skipped {key}: {reason}")
    lines.append(f"ops benchmarks took {time.time() - env.started:.1f} s (since the first one started)")
    return lines


def _target_lines(env: OpsEnv) -> list:
    """Where the fused kernels stand against the targets (information only, never asserted):
    bf16 on CUDA >= 1.5x eager, >= 1.2x torch.compile, within 1.3x of the floor."""
    if env.kind != "cuda":
        return []
    lines = []
    for variant in ("fused-triton", "fused-cuda"):
        rows = [(env.cases[cid], info) for (cid, v), info in env.results.items()
                if v == variant and env.cases[cid].dtype == "bf16"]
        if not rows:
            continue
        parts = []
        for key, goal, better in (("speedup_vs_eager", 1.5, "ge"), ("speedup_vs_compile", 1.2, "ge"),
                                  ("x_floor", 1.3, "le")):
            vals = [(info[key], c) for c, info in rows if key in info]
            if not vals:
                continue
            met = sum((v >= goal) if better == "ge" else (v <= goal) for v, _ in vals)
            worst = min(vals, key=lambda t: t[0]) if better == "ge" else max(vals, key=lambda t: t[0])
            sym = ">=" if better == "ge" else "<="
            parts.append(f"{key.replace('speedup_', '')} {sym} {goal}: {met}/{len(vals)} "
                         f"(worst {worst[0]:.2f} at {worst[1].label} {worst[1].layout})")
        lines.append(f"targets, bf16 {variant} (information, not asserted): " + "; ".join(parts))
    return lines
