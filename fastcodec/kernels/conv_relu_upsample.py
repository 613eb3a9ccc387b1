"""Fused conv2d (stride 1) + bias + ReLU + pixel shuffle (Triton, implicit GEMM).

``conv_relu_upsample_triton`` computes exactly::

    F.pixel_shuffle(F.relu(F.conv2d(x, weight, bias, 1, padding)), scale)

Implicit GEMM over (conv output pixels x conv output channels), sharing the main loop
:func:`fastcodec.kernels.conv_relu_pool.conv_gemm_tile`; the epilogue adds the bias, applies the
ReLU and scatters the tile depth-to-space: conv channel ``c*s*s + i*s + j`` of pixel (oh, ow) is
stored at output (c, oh*s + i, ow*s + j).  The launcher reorders the GEMM columns (weight and bias)
to (i, j, c), c fastest, so that consecutive columns of a tile land on consecutive channels, i.e.
contiguous addresses in a channels_last output.  The store offset separates into a per-row part
(n, oh, ow) and a per-column part (c, i, j), so the scatter costs one add per element.
Offsets inside one image are int32, batch offsets int64, the row index (conv pixels of the batch)
and the grid int32: the launcher runs the torch composition for an image too large for them and
launches huge batches in chunks, as :mod:`fastcodec.kernels.conv_relu_pool` does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .conv_relu_pool import (
    FLAT_K_MAX_CIN,
    conv_gemm_tile,
    device_guard,
    int32_offsets_ok,
    interpreting,
    launch_in_chunks,
    max_launch_rows,
    output_memory_format,
    repack_weight,
    torch_conv_relu,
    use_tf32,
)

__all__ = ["conv_relu_upsample_triton", "conv_relu_upsample_kernel"]


@triton.jit
def conv_relu_upsample_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,
    N, Cin, H, W, Cout, OH, OW, pad_top, pad_left,
    sxn, sxc, sxh, sxw,
    son, soc, soh, sow,
    KH: tl.constexpr, KW: tl.constexpr, SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
    FLAT_K: tl.constexpr, DOT_TF32: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program: BLOCK_M conv output pixels x BLOCK_N conv channels (Cout = C*SCALE*SCALE)."""
    SS: tl.constexpr = SCALE * SCALE

    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(Cout, BLOCK_N)
    pid_m = pid // num_pid_n
    pid_n = pid - pid_m * num_pid_n

    OHW = OH * OW
    M = N * OHW
    pm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = pm < M
    n = pm // OHW
    rem = pm - n * OHW
    oh = rem // OW
    ow = rem - oh * OW
    ih0 = oh - pad_top
    iw0 = ow - pad_left
    row_base = n.to(tl.int64) * sxn + ih0.to(tl.int64) * sxh + iw0.to(tl.int64) * sxw

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < Cout

    acc = conv_gemm_tile(
        x_ptr, w_ptr, row_base, ih0, iw0, row_ok, offs_n, n_ok, Cin, H, W, Cout, sxc, sxh, sxw,
        KH, KW, FLAT_K, DOT_TF32, UPCAST, BLOCK_M, BLOCK_N, BLOCK_K,
    )
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)
        acc = acc + bias[None, :]
    acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN, as in F.relu

    # Depth-to-space.  GEMM column (i*SCALE + j)*C + c holds conv channel c*SS + i*SCALE + j
    # (see the launcher), which goes to (c, oh*SCALE + i, ow*SCALE + j).
    C = Cout // SS
    ij = offs_n // C
    c = offs_n - ij * C
    i = ij // SCALE
    j = ij - i * SCALE
    col_off = c * soc + i * soh + j * sow  # int32: within one image
    o_row = n.to(tl.int64) * son + (oh * SCALE).to(tl.int64) * soh + (ow * SCALE).to(tl.int64) * sow
    o_ptr = (out_ptr + o_row)[:, None] + col_off[None, :]
    tl.store(o_ptr, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


def conv_relu_upsample_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    pad_top: int,
    pad_left: int,
    out_h: int,
    out_w: int,
    scale: int,
    _flat_k: bool | None = None,
) -> torch.Tensor:
    """``pixel_shuffle(relu(conv2d(x, weight, bias, 1, padding)), scale)``, fused.

    (out_h, out_w) is the conv output size (caller-computed, "same" padding resolved to
    pad_top/pad_left); ``weight.shape[0]`` must be ``C * scale * scale``.  Output
    ``[N, C, out_h*scale, out_w*scale]`` in x's dtype and memory format.
    """
    n_batch, cin, h, w = x.shape
    cconv, _, kh, kw = weight.shape
    s = int(scale)
    if s < 1 or cconv % (s * s):
        raise ValueError(f"weight.shape[0]={cconv} is not a multiple of scale**2={s * s}")
    c = cconv // (s * s)
    oh, ow = int(out_h), int(out_w)
    fmt = output_memory_format(x)
    if not int32_offsets_ok(x.shape, x.stride(), (kh, kw), weight.numel(), (n_batch, c, oh * s, ow * s)):
        # An image too large for the kernels' int32 offsets: the torch composition, exactly.
        from fastcodec.ops._conv import pixel_shuffle

        z = torch_conv_relu(x, weight, bias, stride=1, pad_top=int(pad_top), pad_left=int(pad_left),
                            out_h=oh, out_w=ow)
        return pixel_shuffle(z, s).contiguous(memory_format=fmt)
    out = torch.empty((n_batch, c, oh * s, ow * s), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out

    # GEMM columns in (i, j, c) order, c fastest: conv channel c*s*s + i*s + j -> column (i*s + j)*C + c.
    col_order = torch.arange(cconv, device=weight.device).view(c, s * s).t().reshape(-1)
    w2 = repack_weight(weight.index_select(0, col_order))
    has_bias = bias is not None
    b = bias.index_select(0, col_order).contiguous() if has_bias else w2
    flat_k = (cin < FLAT_K_MAX_CIN) if _flat_k is None else bool(_flat_k)
    meta = dict(KH=kh, KW=kw, SCALE=s, HAS_BIAS=has_bias, FLAT_K=flat_k, DOT_TF32=use_tf32(x.dtype),
                UPCAST=interpreting())

    from .configs import tuned_kernel  # configs.py imports this module

    with device_guard(x):
        launch_in_chunks(tuned_kernel("conv_relu_upsample", x.device), x, w2, b, out, cconv, oh,
                         ow, pad_top, pad_left, max_launch_rows(cconv), meta)
    return out
