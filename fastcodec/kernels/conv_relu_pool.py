"""Fused conv2d + bias + ReLU + max/avg pooling (Triton, implicit GEMM).

``conv_relu_pool_triton`` computes exactly::

    F.max_pool2d(F.relu(F.conv2d(x, weight, bias, stride, padding)), pool_size)   # pool="max"
    F.avg_pool2d(F.relu(F.conv2d(x, weight, bias, stride, padding)), pool_size)   # pool="avg"

(floor mode, no pooling padding) in one pass: the conv output never touches memory.

Design (implicit GEMM, fp32 accumulation):

* One program computes a tile of ``BLOCK_M`` pooled output pixels x ``BLOCK_N`` output channels.
* Rows of the A tile are (pooled pixel, window position): ``BLOCK_M * WIN`` rows where ``WIN`` is
  ``pool_size**2`` rounded up to a power of two (padding rows are masked), so a single
  ``tl.dot([BLOCK_M*WIN, BLOCK_K] x [BLOCK_K, BLOCK_N])`` per K step yields one accumulator per
  conv output pixel of every pooling window.
* The reduction axis K = Cin*KH*KW is ordered (ky, kx, ci) with ci fastest (contiguous in
  channels_last); the weight is repacked once to ``[KH*KW*Cin, Cout]``.  Two K walks:
  ``FLAT_K`` (small Cin: K is flattened and split into (ky, kx, ci) per column, no padding waste) and
  tap-major (Cin >= 32: the loop runs over (tap, ci-block) with contiguous ci vectors, which the
  compiler can vectorise).  Zero padding = the bounds mask of the gather.
* Epilogue: reshape the accumulator to ``[BLOCK_M, WIN, BLOCK_N]`` and reduce the window axis:
  max-pool -> ``relu(max(acc) + b)``; avg-pool -> ``mean(relu(acc + b))``.  The maxima propagate
  NaN, as ``F.max_pool2d`` and ``F.relu`` do.

Offsets inside one image are int32, batch offsets int64; the row index (pooled pixels of the whole
batch) and the grid are int32.  The launcher keeps both in range (:func:`int32_offsets_ok`,
:func:`batch_chunks`): a call whose image (input, output, or the repacked weight) reaches 2**31
elements runs the torch composition instead, and a batch of more rows is launched in chunks of
whole images.  On GPUs the fast path is channels_last with Cin, Cout multiples of 16 (vectorised,
software-pipelined loads); NCHW works through the strides but gathers along channels.

The module imports ``triton`` at import time; :mod:`fastcodec.ops` imports it lazily.  When the
kernels run in the Triton interpreter (``TRITON_INTERPRET=1``) the variable must be set before this
module is imported.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

__all__ = ["conv_relu_pool_triton", "conv_relu_pool_kernel", "conv_gemm_tile"]

# Cin below this takes the flattened-K walk (see module docstring).
FLAT_K_MAX_CIN = 32

INT32_MAX = 2**31 - 1
# Rows (output pixels of the batch) per launch: the row index of a tile (pid_m * BLOCK_M + r, up to
# BLOCK_M - 1 past the last row; BLOCK_M <= 256 in every config) must stay an int32.
MAX_LAUNCH_ROWS = INT32_MAX - 1024
# Smallest BLOCK_M and BLOCK_N of any config: the grid (row tiles x channel tiles) is at most
# rows / _MIN_BLOCK_M * cdiv(Cout, _MIN_BLOCK_N) programs, which must stay an int32 too.
_MIN_BLOCK_M, _MIN_BLOCK_N = 1, 16


def interpreting() -> bool:
    """Whether the kernels run in the Triton interpreter (CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_tf32(dtype: torch.dtype) -> bool:
    """TF32 dot for fp32 inputs exactly when ``F.conv2d`` would use it on a GPU (cuDNN's flag)."""
    return dtype == torch.float32 and cudnn_conv_tf32()


def cudnn_conv_tf32() -> bool:
    """Whether cuDNN convolutions may use TF32.

    Newer torch: ``torch.backends.cudnn.conv.fp32_precision`` ("none" inherits from
    ``torch.backends.cudnn`` then ``torch.backends``; TF32 only when the result is "tf32"). Older
    torch: ``torch.backends.cudnn.allow_tf32`` (not read when the new API exists: it raises once
    the conv and RNN settings differ). Never raises: IEEE fp32 if the flags cannot be read."""
    try:
        cudnn = torch.backends.cudnn
        conv = getattr(cudnn, "conv", None)
        if conv is None or not hasattr(conv, "fp32_precision"):
            return bool(cudnn.allow_tf32)
        precision = conv.fp32_precision
        for parent in (cudnn, torch.backends):
            if precision != "none":
                break
            precision = getattr(parent, "fp32_precision", "none")
        return precision == "tf32"
    except Exception:
        return False


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last in -> channels_last out; anything else -> contiguous (NCHW)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def device_guard(t: torch.Tensor):
    """``torch.cuda.device(t.device)`` for a CUDA tensor, a no-op otherwise.

    Triton launches on ``torch.cuda.current_device()`` and its current stream, whatever the
    tensors' device: every launch runs inside this guard."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _image_extent(sizes, strides) -> int:
    """Largest element offset inside one image (dims 1.. of an ``[N, ...]`` tensor)."""
    return sum((int(n) - 1) * abs(int(st)) for n, st in zip(sizes[1:], strides[1:]) if int(n) > 0)


def int32_offsets_ok(x_shape, x_strides, kernel_hw, weight_numel: int, out_shape) -> bool:
    """Whether the kernels' int32 in-image offsets cannot overflow for this call.

    The input image with its strides (rows/columns at least the kernel's, whose taps are int32
    offsets too), the output image (dense: allocated by the launcher) and the repacked weight must
    each span at most ``INT32_MAX`` elements.  Plain ints, so it runs on meta shapes."""
    _, c, h, w = (int(v) for v in x_shape)
    kh, kw = (int(v) for v in kernel_hw)
    x_reach = _image_extent((1, c, max(h, kh), max(w, kw)), x_strides)
    out_elems = 1
    for v in out_shape[1:]:
        out_elems *= int(v)
    return max(x_reach, out_elems - 1, int(weight_numel) - 1) <= INT32_MAX


def max_launch_rows(cout: int) -> int:
    """Most output rows (pixels of the batch) one launch may cover for ``cout`` GEMM columns."""
    return max(1, min(MAX_LAUNCH_ROWS, INT32_MAX * _MIN_BLOCK_M // triton.cdiv(int(cout), _MIN_BLOCK_N)))


def batch_chunks(n_batch: int, rows_per_image: int, max_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive whole images covering ``range(n_batch)`` with at
    most ``max_rows`` rows each (one chunk when the batch fits); one image per chunk at least."""
    per = max(1, int(max_rows) // max(1, int(rows_per_image)))
    return [(n0, min(n0 + per, n_batch)) for n0 in range(0, n_batch, per)]


def launch_in_chunks(kernel, x, w2, b, out, cout: int, rows_h: int, rows_w: int,
                     pad_top: int, pad_left: int, max_rows: int, meta: dict) -> None:
    """Launches a conv GEMM ``kernel`` (both kernels share this argument list) over the batch in
    chunks of whole images of at most ``max_rows`` rows (``rows_h * rows_w`` per image): the
    kernels' row index is an int32. Each chunk runs on views of ``x`` and ``out``."""
    n_batch, cin, h, w = x.shape
    for n0, n1 in batch_chunks(n_batch, rows_h * rows_w, max_rows):
        xc, oc = (x, out) if n1 - n0 == n_batch else (x[n0:n1], out[n0:n1])
        m_rows = (n1 - n0) * rows_h * rows_w

        def grid(meta, m_rows=m_rows):
            return (triton.cdiv(m_rows, meta["BLOCK_M"]) * triton.cdiv(cout, meta["BLOCK_N"]),)

        kernel[grid](
            xc, w2, b, oc,
            n1 - n0, cin, h, w, cout, rows_h, rows_w, int(pad_top), int(pad_left),
            *xc.stride(), *oc.stride(),
            **meta,
        )


def torch_conv_relu(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w):
    """``relu(conv2d(...))`` of the ``"torch"`` backend for the launchers' geometry (bottom/right
    padding follow from ``out_h``/``out_w``; negative = rows the convolution never reads)."""
    from fastcodec.ops._conv import conv_relu  # the reference path of fastcodec.ops

    kh, kw = weight.shape[2], weight.shape[3]
    pad_bottom = (out_h - 1) * stride + kh - x.shape[2] - pad_top
    pad_right = (out_w - 1) * stride + kw - x.shape[3] - pad_left
    return conv_relu(x, weight, bias, stride, (pad_top, pad_bottom, pad_left, pad_right))


def repack_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[Cout, Cin, KH, KW]`` -> ``[KH*KW*Cin, Cout]`` (rows ordered (ky, kx, ci), ci fastest)."""
    cout, cin, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh * kw * cin, cout).contiguous()


@triton.jit
def conv_gemm_tile(
    x_ptr, w_ptr,
    row_base, ih0, iw0, row_ok,  # [BLOCK_R]: int64 element offset of (n, ih0, iw0); ints; mask
    offs_n, n_ok,  # [BLOCK_N]
    Cin, H, W, Cout,
    sxc, sxh, sxw,
    KH: tl.constexpr, KW: tl.constexpr,
    FLAT_K: tl.constexpr, DOT_TF32: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Implicit-GEMM main loop: ``acc[r, n] = sum_k x[row r, k] * w[k, n]`` in fp32.

    Row r reads input pixel (ih0[r] + ky, iw0[r] + kx), channel ci, for k = (ky*KW + kx)*Cin + ci;
    out-of-image taps and masked rows read zeros.
    """
    acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    K = KH * KW * Cin
    if FLAT_K:
        for k0 in range(0, K, BLOCK_K):
            k = k0 + offs_k
            k_ok = k < K
            ci = k % Cin
            tap = k // Cin
            ky = tap // KW
            kx = tap % KW
            col_off = ci * sxc + ky * sxh + kx * sxw
            ih = ih0[:, None] + ky[None, :]
            iw = iw0[:, None] + kx[None, :]
            a_mask = (row_ok[:, None] & k_ok[None, :]) & ((ih >= 0) & (ih < H)) & ((iw >= 0) & (iw < W))
            a = tl.load((x_ptr + row_base)[:, None] + col_off[None, :], mask=a_mask, other=0.0)
            b = tl.load(w_ptr + (k[:, None] * Cout + offs_n[None, :]), mask=k_ok[:, None] & n_ok[None, :],
                        other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            if DOT_TF32:
                acc = tl.dot(a, b, acc, input_precision="tf32")
            else:
                acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        num_cb = tl.cdiv(Cin, BLOCK_K)
        for it in range(0, KH * KW * num_cb):
            tap = it // num_cb
            c0 = (it - tap * num_cb) * BLOCK_K
            ky = tap // KW
            kx = tap - ky * KW
            ih = ih0 + ky
            iw = iw0 + kx
            r_ok = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            ci = c0 + offs_k
            c_ok = ci < Cin
            r_off = row_base + (ky * sxh + kx * sxw)
            a = tl.load((x_ptr + r_off)[:, None] + (ci * sxc)[None, :], mask=r_ok[:, None] & c_ok[None, :],
                        other=0.0)
            k = tap * Cin + ci
            b = tl.load(w_ptr + (k[:, None] * Cout + offs_n[None, :]), mask=c_ok[:, None] & n_ok[None, :],
                        other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            if DOT_TF32:
                acc = tl.dot(a, b, acc, input_precision="tf32")
            else:
                acc = tl.dot(a, b, acc, input_precision="ieee")
    return acc


@triton.jit
def max_nan(a, b):
    """``max`` that returns NaN when either operand is NaN (``tl.max`` / ``tl.maximum`` by default
    return the other operand)."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def conv_relu_pool_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,
    N, Cin, H, W, Cout, PH, PW, pad_top, pad_left,
    sxn, sxc, sxh, sxw,
    son, soc, soh, sow,
    KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr,
    POOL: tl.constexpr, WIN: tl.constexpr, POOL_MAX: tl.constexpr, HAS_BIAS: tl.constexpr,
    FLAT_K: tl.constexpr, DOT_TF32: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program: BLOCK_M pooled pixels x BLOCK_N channels.  WIN = next_pow2(POOL*POOL)."""
    PP: tl.constexpr = POOL * POOL
    BLOCK_R: tl.constexpr = BLOCK_M * WIN

    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(Cout, BLOCK_N)
    pid_m = pid // num_pid_n  # channel tiles of one pixel tile run back to back (input reuse in L2)
    pid_n = pid - pid_m * num_pid_n

    PHW = PH * PW
    M = N * PHW

    # Rows: (pooled pixel, window position), window position fastest.
    r = tl.arange(0, BLOCK_R)
    pm = pid_m * BLOCK_M + r // WIN
    win = r % WIN
    win_ok = win < PP
    row_ok = (pm < M) & win_ok
    n = pm // PHW
    rem = pm - n * PHW
    ph = rem // PW
    pw = rem - ph * PW
    oh = ph * POOL + win // POOL
    ow = pw * POOL + win % POOL
    ih0 = oh * STRIDE - pad_top
    iw0 = ow * STRIDE - pad_left
    row_base = n.to(tl.int64) * sxn + ih0.to(tl.int64) * sxh + iw0.to(tl.int64) * sxw

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < Cout

    acc = conv_gemm_tile(
        x_ptr, w_ptr, row_base, ih0, iw0, row_ok, offs_n, n_ok, Cin, H, W, Cout, sxc, sxh, sxw,
        KH, KW, FLAT_K, DOT_TF32, UPCAST, BLOCK_R, BLOCK_N, BLOCK_K,
    )

    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
    # NaNs propagate through the max pooling and the ReLU, as in F.max_pool2d / F.relu.
    if POOL_MAX:
        # relu(max(acc) + b) == max(relu(acc + b)): bias and ReLU after the reduction.
        if WIN != PP:
            acc = tl.where(win_ok[:, None], acc, float("-inf"))
        res = tl.reduce(tl.reshape(acc, (BLOCK_M, WIN, BLOCK_N)), 1, max_nan)
        if HAS_BIAS:
            res = res + bias[None, :]
        res = tl.maximum(res, 0.0, propagate_nan=tl.PropagateNan.ALL)
    else:
        if HAS_BIAS:
            acc = acc + bias[None, :]
        acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)
        if WIN != PP:
            acc = tl.where(win_ok[:, None], acc, 0.0)
        res = tl.sum(tl.reshape(acc, (BLOCK_M, WIN, BLOCK_N)), axis=1) * (1.0 / PP)

    # Store the pooled tile.
    pm_o = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n_o = pm_o // PHW
    rem_o = pm_o - n_o * PHW
    ph_o = rem_o // PW
    pw_o = rem_o - ph_o * PW
    o_row = n_o.to(tl.int64) * son + ph_o.to(tl.int64) * soh + pw_o.to(tl.int64) * sow
    o_ptr = (out_ptr + o_row)[:, None] + (offs_n * soc)[None, :]
    tl.store(o_ptr, res.to(out_ptr.dtype.element_ty), mask=(pm_o < M)[:, None] & n_ok[None, :])


def conv_relu_pool_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int,
    pad_top: int,
    pad_left: int,
    out_h: int,
    out_w: int,
    pool: str,
    pool_size: int,
    _flat_k: bool | None = None,
) -> torch.Tensor:
    """``{max,avg}_pool2d(relu(conv2d(x, weight, bias, stride, padding)), pool_size)``, fused.

    (out_h, out_w) is the conv output size computed by the caller (which also resolves asymmetric
    "same" padding into pad_top/pad_left; bottom/right padding is implied by out_h/out_w).
    Arguments are assumed validated (same dtype/device, 4-D, kh/kw in 1..7).  ``_flat_k`` forces the
    K walk (tests); by default it follows Cin.  Launches on x's device (and its current stream);
    an image beyond the kernel's int32 offsets runs the torch composition instead.
    """
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    n_batch, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    p = int(pool_size)
    ph, pw = int(out_h) // p, int(out_w) // p
    fmt = output_memory_format(x)
    if not int32_offsets_ok(x.shape, x.stride(), (kh, kw), weight.numel(), (n_batch, cout, ph, pw)):
        # An image too large for the kernels' int32 offsets: the torch composition, exactly.
        z = torch_conv_relu(x, weight, bias, stride=int(stride), pad_top=int(pad_top), pad_left=int(pad_left),
                            out_h=int(out_h), out_w=int(out_w))
        out = F.max_pool2d(z, p) if pool == "max" else F.avg_pool2d(z, p)
        return out.contiguous(memory_format=fmt)
    out = torch.empty((n_batch, cout, ph, pw), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out

    w2 = repack_weight(weight)
    has_bias = bias is not None
    b = bias.contiguous() if has_bias else w2  # dummy pointer when there is no bias
    flat_k = (cin < FLAT_K_MAX_CIN) if _flat_k is None else bool(_flat_k)
    meta = dict(
        KH=kh, KW=kw, STRIDE=int(stride),
        POOL=p, WIN=triton.next_power_of_2(p * p), POOL_MAX=(pool == "max"), HAS_BIAS=has_bias,
        FLAT_K=flat_k, DOT_TF32=use_tf32(x.dtype), UPCAST=interpreting(),
    )

    from .configs import tuned_kernel  # configs.py imports this module

    with device_guard(x):
        launch_in_chunks(tuned_kernel("conv_relu_pool", x.device), x, w2, b, out, cout, ph, pw,
                         pad_top, pad_left, max_launch_rows(cout), meta)
    return out
