"""The one registry of the Triton kernels: tuning configs, interpreter config, AOT signatures.

``KERNELS[name]`` is a :class:`KernelSpec` with

* ``fn`` -- the raw ``@triton.jit`` function (what ``triton.compile(ASTSource(fn, ...))`` takes);
* ``configs`` -- the autotuning set for GPUs (``triton.Config`` with BLOCK_M/BLOCK_N/BLOCK_K,
  num_warps, num_stages), sized for Ampere (sm_80, <= 163 KB shared memory) and Hopper (sm_90),
  pruned per call to what fits the device (:func:`prune_configs`);
* ``interpret_config`` -- the single config used under ``TRITON_INTERPRET=1`` (the interpreter
  cannot benchmark; big tiles run fastest there);
* ``signatures`` -- per torch dtype, a representative ``(signature, constexprs)`` pair in
  ``ASTSource`` form: ``signature`` maps every argument name to its Triton type (``"*fp16"``,
  ``"i32"``, or ``"constexpr"``) and ``constexprs`` gives the problem constexprs (the tile sizes come
  from each config, see :meth:`KernelSpec.ast_source`);
* ``key`` / ``prune`` -- the autotune key (problem sizes; Triton adds the tensor dtypes) and the
  early config pruning.

Ahead-of-time compilation of every kernel x config x dtype::

    from triton.backends.compiler import GPUTarget
    for name, spec in KERNELS.items():
        for dtype in spec.signatures:
            for cfg in spec.configs:
                spec.compile(dtype, cfg, GPUTarget("cuda", 90, 32))   # or ("cuda", 80, 32)

This module imports ``triton`` (it is imported lazily by the kernel launchers, never by
``import fastcodec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import triton

from .conv_relu_pool import conv_relu_pool_kernel, interpreting
from .conv_relu_upsample import conv_relu_upsample_kernel

__all__ = ["KERNELS", "KernelSpec", "TRITON_DTYPES", "prune_configs", "smem_estimate", "device_smem_info"]

TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# Per-thread budget used to prune configs: fp32 accumulator registers per thread.
_MAX_ACC_REGS = 128
# ... for large pooling windows (WIN >= 16), by operand size: the window reduction of the epilogue
# about doubles the registers (ptxas, python -m fastcodec.kernels.check: 4x64x32 w4 at 7x7 uses
# 236-255 registers for 128 accumulator registers and spills in IEEE fp32, as does 64 at 5x5 in
# fp32; the 2x2 configs spill at 3x3 on sm_80).
_MAX_ACC_REGS_LARGE_WINDOW = {2: 64, 4: 32}
# Shared memory per block when the device cannot be asked (no GPU, a CPU tensor): the smallest
# opt-in maximum of the supported cards (sm_86 / sm_89: 99 KiB); see ``check.SMEM_LIMIT``.
DEFAULT_SMEM_LIMIT = 99 * 1024
# A dot of fewer rows runs as mma.sync on sm_90a instead of wgmma (64 rows per 4-warp group):
# the small-BLOCK_M configs, meant for large pooling windows, are kept only from this many rows.
_MIN_ROWS_SMALL_M = 64


def _cfg(bm: int, bn: int, bk: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages)


def smem_estimate(config, win: int, elsize: int, arch: int | None = None) -> int:
    """Shared memory per block of ``config`` (bytes) for a dot of ``BLOCK_M * win`` rows.

    Buffers of the A ``[rows, BLOCK_K]`` and B ``[BLOCK_K, BLOCK_N]`` tiles: ``num_stages`` of them
    on sm_90a (the pipelined wgmma path) and when ``arch`` is unknown (None), ``num_stages - 1`` on
    sm_8x (Triton's cp.async pipeline; the IEEE fp32 path on sm_90a uses as few).  ``python -m
    fastcodec.kernels.check`` fails a variant whose compiled shared memory exceeds this estimate.
    """
    rows = config.kwargs["BLOCK_M"] * int(win)
    buffers = config.num_stages if arch is None or arch >= 90 else max(1, config.num_stages - 1)
    return buffers * (rows + config.kwargs["BLOCK_N"]) * config.kwargs["BLOCK_K"] * int(elsize)


_DEVICE_SMEM: dict[int, tuple[int, int | None]] = {}


def device_smem_info(device) -> tuple[int, int | None]:
    """``(shared memory per block, arch)`` of a CUDA ``device``: its opt-in maximum and compute
    capability (e.g. 80); ``(DEFAULT_SMEM_LIMIT, None)`` for anything else (a CPU tensor, the
    interpreter) or when the device cannot be queried."""
    device = torch.device(device)
    if device.type != "cuda":
        return DEFAULT_SMEM_LIMIT, None
    try:
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in _DEVICE_SMEM:
            props = torch.cuda.get_device_properties(index)
            limit = int(getattr(props, "shared_memory_per_block_optin", 0) or 0) or DEFAULT_SMEM_LIMIT
            _DEVICE_SMEM[index] = (limit, props.major * 10 + props.minor)
        return _DEVICE_SMEM[index]
    except Exception:  # driver trouble: stay conservative
        return DEFAULT_SMEM_LIMIT, None


def prune_configs(configs, *, cout: int, elsize: int, win: int = 1, smem_limit: int = DEFAULT_SMEM_LIMIT,
                  arch: int | None = None):
    """The configs worth running for ``cout`` output channels, ``elsize``-byte operands and ``win``
    GEMM rows per output pixel (``WIN`` of the pooling kernel, 1 otherwise) on a device of compute
    capability ``arch`` (None: unknown) with ``smem_limit`` bytes of shared memory per block.

    Dropped: BLOCK_N far above Cout; dots of fewer than 16 rows (``tl.dot``'s minimum);
    small-BLOCK_M configs (BLOCK_M < 16, for large windows) below 64 rows; accumulators above
    ``_MAX_ACC_REGS`` registers per thread (``_MAX_ACC_REGS_LARGE_WINDOW`` from 16 rows per output
    pixel); shared memory (:func:`smem_estimate` for ``arch``)
    above ``smem_limit``.  Never empty: when Cout is below the BLOCK_N of every config that fits
    otherwise, the narrowest of those; when none fits at all, the config of least shared memory
    (among those with a valid dot).
    """
    win = int(win)
    n_cap = max(16, triton.next_power_of_2(int(cout)))
    max_acc = _MAX_ACC_REGS if win <= 4 else _MAX_ACC_REGS_LARGE_WINDOW.get(int(elsize), 32)

    def rows(c):
        return c.kwargs["BLOCK_M"] * win

    def acc_regs(c):
        return rows(c) * c.kwargs["BLOCK_N"] / (32 * c.num_warps)

    def fits(c, cap_n=True):
        if (cap_n and c.kwargs["BLOCK_N"] > n_cap) or rows(c) < 16 or acc_regs(c) > max_acc:
            return False
        if c.kwargs["BLOCK_M"] < 16 and rows(c) < _MIN_ROWS_SMALL_M:
            return False
        return smem_estimate(c, win, elsize, arch) <= smem_limit

    kept = [c for c in configs if fits(c)]
    if not kept:  # Cout below every BLOCK_N that fits: the narrowest of those
        kept = [c for c in configs if fits(c, cap_n=False)]
        kept = [c for c in kept if c.kwargs["BLOCK_N"] == min(k.kwargs["BLOCK_N"] for k in kept)]
    if not kept:  # nothing fits: the one most likely to run at all
        valid = [c for c in configs if rows(c) >= 16] or list(configs)
        kept = [min(valid, key=lambda c: (smem_estimate(c, win, elsize, arch), acc_regs(c)))]
    return kept


def _prune(configs, named_args, **kwargs):
    """The autotuner's ``early_config_prune``: :func:`prune_configs` for this call (Cout, dtype,
    ``WIN`` of the pooling kernel) on the input's device (its shared memory per block)."""
    x = named_args["x_ptr"]
    elsize = x.element_size() if hasattr(x, "element_size") else 2
    device = getattr(x, "device", None)
    limit, arch = device_smem_info(device) if device is not None else (DEFAULT_SMEM_LIMIT, None)
    return prune_configs(configs, cout=int(named_args["Cout"]), elsize=elsize,
                         win=int(kwargs.get("WIN", 1)), smem_limit=limit, arch=arch)


@dataclass
class KernelSpec:
    fn: Any  # triton JITFunction
    configs: list
    interpret_config: Any  # triton.Config
    signatures: dict  # torch.dtype -> (signature dict, constexpr dict)
    key: list = field(default_factory=list)
    prune: Callable | None = None
    # Argument specialisations of the representative (hot-path) call, as Triton's JIT would derive
    # them: 1 -> the argument becomes a constexpr equal to 1; 16 -> divisibility-by-16 attribute.
    hints: dict = field(default_factory=dict)

    def kept_configs(self, dtype: torch.dtype, *, cout: int = 4096, arch: int | None = None,
                     smem_limit: int | None = None, **constexprs) -> list:
        """The configs the prune keeps for a call in ``dtype`` with ``cout`` output channels and the
        representative constexprs (``constexprs`` override them, e.g. ``POOL=3, WIN=16``) on a
        device of compute capability ``arch`` with ``smem_limit`` bytes of shared memory per block
        (None: :data:`DEFAULT_SMEM_LIMIT`): what the ahead-of-time check compiles."""
        if self.prune is None:
            return list(self.configs)
        win = {**self.signatures[dtype][1], **constexprs}.get("WIN", 1)
        elsize = torch.empty(0, dtype=dtype).element_size()
        return prune_configs(self.configs, cout=cout, elsize=elsize, win=win, arch=arch,
                             smem_limit=DEFAULT_SMEM_LIMIT if smem_limit is None else smem_limit)

    def autotuned(self, interpret: bool):
        """The autotuned kernel: the GPU set, or the interpreter config alone."""
        if interpret:
            return triton.autotune(configs=[self.interpret_config], key=self.key)(self.fn)
        prune = {"early_config_prune": self.prune} if self.prune is not None else None
        return triton.autotune(configs=self.configs, key=self.key, prune_configs_by=prune)(self.fn)

    def ast_source(self, dtype: torch.dtype, config, *, hints: bool = True, **constexpr_overrides):
        """``ASTSource`` for one dtype x config (problem constexprs overridable, e.g. KH=5).

        With ``hints`` the source is specialised like the JIT specialises the representative call
        (see ``KernelSpec.hints``): the binary is then only valid for calls that satisfy them (e.g.
        channels_last with Cin, Cout multiples of 16); ``hints=False`` gives the generic kernel.
        """
        from triton.compiler import ASTSource

        signature, constexprs = self.signatures[dtype]
        ones = {k: 1 for k, v in self.hints.items() if v == 1} if hints else {}
        div16 = {k for k, v in self.hints.items() if v == 16} if hints else set()
        constexprs = {**constexprs, **ones, **constexpr_overrides, **config.kwargs}
        missing = [k for k in self.fn.arg_names if k not in signature and k not in constexprs]
        if missing:
            raise KeyError(f"{self.fn.__name__}: no type or value for {missing}")
        signature = {k: ("constexpr" if k in constexprs else signature[k]) for k in self.fn.arg_names}
        # Pointers are assumed 16-byte aligned, hints or not (fresh torch allocations are; a view
        # with a storage offset may not be: an AOT dispatcher must check data_ptr() % 16).
        attrs = {(i,): [["tt.divisibility", 16]] for i, (k, t) in enumerate(signature.items())
                 if t.startswith("*") or (k in div16 and t != "constexpr")}
        return ASTSource(fn=self.fn, signature=signature, constexprs=constexprs, attrs=attrs)

    def compile(self, dtype: torch.dtype, config, target, *, hints: bool = True, **constexpr_overrides):
        """``triton.compile`` for one dtype x config on ``target`` (a ``GPUTarget``); no GPU needed."""
        from triton.compiler import make_backend

        src = self.ast_source(dtype, config, hints=hints, **constexpr_overrides)
        options = make_backend(target).parse_options(
            {"num_warps": config.num_warps, "num_stages": config.num_stages})
        return triton.compile(src, target=target, options=options.__dict__)


def _signatures(scalar_names, ptr_names, constexprs_for):
    out = {}
    for dtype, tname in TRITON_DTYPES.items():
        sig = {name: f"*{tname}" for name in ptr_names}
        sig.update({name: "i32" for name in scalar_names})
        out[dtype] = (sig, constexprs_for(dtype))
    return out


_PTRS = ["x_ptr", "w_ptr", "b_ptr", "out_ptr"]
_STRIDES = ["sxn", "sxc", "sxh", "sxw", "son", "soc", "soh", "sow"]
# Representative call: channels_last input and output, Cin and Cout multiples of 16 (so are the
# N/H/W strides); H and W arbitrary.
_HINTS = {"Cin": 16, "Cout": 16, "sxc": 1, "soc": 1, "sxn": 16, "sxh": 16, "sxw": 16, "son": 16, "soh": 16,
          "sow": 16}

# ---------------------------------------------------------------------------------------------
# conv_relu_pool: BLOCK_M counts *pooled* pixels; the dot has BLOCK_M * WIN rows (WIN = 4 for 2x2).
# ---------------------------------------------------------------------------------------------
# Every config compiles without spills for every dtype / K walk / precision on sm_80 and sm_90a:
# ``python -m fastcodec.kernels.check`` (benches/results/kernel-resources.md).  Replaced after it:
# 32x64x32 w4 s4 (fp32 TF32 flat-K: 4 B spill stores on sm_80) -> 3 stages; 16x128x64 w4 s3 (IEEE
# fp32: 48-152 B spill stores on sm_80 and sm_90) -> 8 warps.
_POOL_CONFIGS = [
    _cfg(32, 128, 32, 8, 3),  # 128 x 128 dot tile
    _cfg(32, 64, 32, 4, 3),   # 128 x 64
    _cfg(16, 128, 64, 8, 3),  # 64 x 128, deep K (large Cin)
    _cfg(64, 64, 32, 8, 3),   # 256 x 64 (few output channels, many pixels)
    _cfg(16, 64, 64, 4, 4),   # 64 x 64, small problems / occupancy
    _cfg(32, 32, 32, 4, 4),   # 128 x 32 (Cout <= 32)
    # Large windows (pool_size >= 3: WIN = 16, 32, 64 rows per pooled pixel), where the configs
    # above need >= 256 rows, up to 320 KiB of shared memory, and spill.  The prune keeps these only
    # from 64 dot rows (never for 2x2 pooling, whose choices above are unchanged) and within the
    # large-window register budget (fp32: the 64 x 64 tile alone; 16-bit: also 128 x 64):
    _cfg(4, 64, 32, 4, 2),    # 64 x 64 for 3x3/4x4, 128 x 64 for 5x5
    _cfg(2, 64, 32, 4, 2),    # 64 x 64 for 5x5, 128 x 64 for 6x6/7x7 (3 stages: 8 B IEEE fp32 spills)
    _cfg(1, 64, 32, 4, 3),    # 64 x 64 for 6x6/7x7 (2 stages: 8 B IEEE fp32 flat-K spills on sm_80)
]
_POOL_INTERPRET = _cfg(16, 32, 32, 4, 1)

_POOL_SCALARS = ["N", "Cin", "H", "W", "Cout", "PH", "PW", "pad_top", "pad_left"] + _STRIDES


def _pool_constexprs(dtype):
    return {"KH": 3, "KW": 3, "STRIDE": 1, "POOL": 2, "WIN": 4, "POOL_MAX": True, "HAS_BIAS": True,
            "FLAT_K": False, "DOT_TF32": dtype == torch.float32, "UPCAST": False}


# ---------------------------------------------------------------------------------------------
# conv_relu_upsample: BLOCK_M conv pixels x BLOCK_N conv channels (C * scale**2).
# ---------------------------------------------------------------------------------------------
# Changed after the resource check (python -m fastcodec.kernels.check):
# * 128x128x32 w8 s3 removed: on sm_90a ptxas serializes its fp16/bf16 wgmma (C7515, non-wgmma
#   instructions define accumulator registers inside the pipeline stage) -- as it does for every
#   BLOCK_N=128 tile here with 8 or 16 warps; with 4 warps the 128x128 tile spills.  256x64x32 w8
#   below covers the same tile area.
# * 128x64x32 w4 s4 (fp32 flat-K: 8-12 B spill stores, TF32 on sm_80, IEEE on both) -> 8 warps.
# * 64x128x64 w4 s3 (IEEE fp32: 8-28 B spill stores; with 8 warps the wgmma is serialized as above)
#   -> 64x128x32 w4 s4.
_UPSAMPLE_CONFIGS = [
    _cfg(128, 64, 32, 8, 4),
    _cfg(64, 128, 32, 4, 4),
    _cfg(256, 64, 32, 8, 3),
    _cfg(64, 64, 64, 4, 4),
    _cfg(128, 16, 32, 4, 4),  # last layer: 3 colour channels x 4 = 12 conv channels
]
_UPSAMPLE_INTERPRET = _cfg(64, 32, 32, 4, 1)

_UPSAMPLE_SCALARS = ["N", "Cin", "H", "W", "Cout", "OH", "OW", "pad_top", "pad_left"] + _STRIDES


def _upsample_constexprs(dtype):
    return {"KH": 3, "KW": 3, "SCALE": 2, "HAS_BIAS": True, "FLAT_K": False,
            "DOT_TF32": dtype == torch.float32, "UPCAST": False}


KERNELS: dict[str, KernelSpec] = {
    "conv_relu_pool": KernelSpec(
        fn=conv_relu_pool_kernel,
        configs=_POOL_CONFIGS,
        interpret_config=_POOL_INTERPRET,
        signatures=_signatures(_POOL_SCALARS, _PTRS, _pool_constexprs),
        key=["Cin", "Cout", "KH", "KW", "STRIDE", "POOL", "POOL_MAX", "FLAT_K", "DOT_TF32"],
        prune=_prune,
        hints=_HINTS,
    ),
    "conv_relu_upsample": KernelSpec(
        fn=conv_relu_upsample_kernel,
        configs=_UPSAMPLE_CONFIGS,
        interpret_config=_UPSAMPLE_INTERPRET,
        signatures=_signatures(_UPSAMPLE_SCALARS, _PTRS, _upsample_constexprs),
        key=["Cin", "Cout", "KH", "KW", "SCALE", "FLAT_K", "DOT_TF32"],
        prune=_prune,
        hints=_HINTS,
    ),
}


_TUNED: dict[tuple, Any] = {}


def tuned_kernel(name: str, device=None):
    """The autotuned launcher of kernel ``name`` for tensors on ``device``: the GPU config set, or
    the interpreter config alone under ``TRITON_INTERPRET=1``; built on first use and kept.

    One launcher per kind of device (its shared memory per block and compute capability): Triton's
    autotune cache is keyed by problem sizes and dtypes only, so one launcher shared by an H100 and
    an A10 would run the config timed on whichever came first, possibly one the other cannot fit."""
    kind = device_smem_info(device) if device is not None else (DEFAULT_SMEM_LIMIT, None)
    if (name, kind) not in _TUNED:
        _TUNED[(name, kind)] = KERNELS[name].autotuned(interpret=interpreting())
    return _TUNED[(name, kind)]
