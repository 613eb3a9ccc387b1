"""``conv_relu_upsample``: fused ``pixel_shuffle(relu(conv2d(x, weight, bias)), scale)``.

Custom op ``torch.ops.fastcodec.conv_relu_upsample``::

    conv_relu_upsample(Tensor x, Tensor weight, Tensor? bias, SymInt pad_top,
                       SymInt pad_bottom, SymInt pad_left, SymInt pad_right, SymInt scale,
                       str backend) -> Tensor

See :mod:`fastcodec.ops.conv_relu_pool` for the conventions (validation and backend choice in
Python, fake implementation, autograd by recomputation).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _validate as V
from ._backend import launch_kernel, resolve_backend
from ._conv import conv_relu, padded_conv, padded_conv_backward, pixel_shuffle

_OP = "conv_relu_upsample"
aten = torch.ops.aten


def _out_shape(x: Tensor, weight: Tensor, pt, pb, pl, pr, scale):
    oh = V.conv_output_size(x.shape[2], weight.shape[2], pt, pb, 1)
    ow = V.conv_output_size(x.shape[3], weight.shape[3], pl, pr, 1)
    shape = (x.shape[0], weight.shape[0] // (scale * scale), oh * scale, ow * scale)
    return oh, ow, shape


@torch.library.custom_op("fastcodec::conv_relu_upsample", mutates_args=())
def _conv_relu_upsample_op(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    pad_top: int,
    pad_bottom: int,
    pad_left: int,
    pad_right: int,
    scale: int,
    backend: str,
) -> Tensor:
    fmt = V.memory_format_of(x)
    pads = (pad_top, pad_bottom, pad_left, pad_right)
    oh, ow, shape = _out_shape(x, weight, *pads, scale)
    if backend == "torch" or x.numel() == 0:
        z = conv_relu(x, weight, bias, 1, pads)
        return pixel_shuffle(z, scale).contiguous(memory_format=fmt)
    return launch_kernel(
        _OP, backend, x, weight, bias, fmt, shape,
        pad_top=pad_top, pad_left=pad_left, out_h=oh, out_w=ow, scale=scale,
    )


@_conv_relu_upsample_op.register_fake
def _conv_relu_upsample_fake(
    x, weight, bias, pad_top, pad_bottom, pad_left, pad_right, scale, backend
):
    _, _, shape = _out_shape(x, weight, pad_top, pad_bottom, pad_left, pad_right, scale)
    return torch.empty(
        shape, dtype=x.dtype, device=x.device, memory_format=V.memory_format_of(x)
    )


def _setup_context(ctx, inputs, output):
    x, weight, bias, pt, pb, pl, pr, scale, _backend = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.geometry = ((pt, pb, pl, pr), scale)


def _backward(ctx, grad_out):
    """Recomputes the convolution output (for the ReLU mask), un-shuffles the incoming
    gradient, masks it (``threshold_backward``) and applies ``convolution_backward``.
    Recomputing rather than saving the output keeps the backward valid when a later layer
    modifies the output in place."""
    x, weight, bias = ctx.saved_tensors
    pads, scale = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    y, xp = padded_conv(x, weight, bias, 1, pads)
    gy = aten.threshold_backward(F.pixel_unshuffle(grad_out, scale), y, 0)
    gx, gw, gb = padded_conv_backward(
        gy, x, xp, weight, bias, 1, pads, (need_x, need_w, need_b)
    )
    return (gx, gw, gb) + (None,) * 6


_conv_relu_upsample_op.register_autograd(_backward, setup_context=_setup_context)


def conv_relu_upsample(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    *,
    padding=0,
    scale: int = 2,
    backend: Optional[str] = None,
) -> Tensor:
    """Fused convolution (stride 1) + ReLU + pixel shuffle.

    Returns exactly ``F.pixel_shuffle(F.relu(F.conv2d(x, weight, bias, 1, padding)), scale)``:
    ``[N, C_in, H, W] -> [N, C_out / scale**2, out_h * scale, out_w * scale]``. NaNs propagate
    as in that composition except with the ``"torch"`` backend on CPU for float32/bfloat16 (oneDNN's
    fused ReLU), where a NaN of the convolution output becomes 0: see
    :func:`fastcodec.ops.conv_relu_pool`.

    Args:
        x, bias, backend: as in :func:`fastcodec.ops.conv_relu_pool`.
        weight: ``[C_out, C_in, kH, kW]``, ``1 <= kH, kW <= 7``, ``C_out`` divisible by
            ``scale**2``.
        padding: int >= 0, a pair, ``"valid"`` or ``"same"``.
        scale: the pixel-shuffle upscale factor, >= 1.
    """
    x, weight, bias = V.apply_autocast(x, weight, bias)
    V.check_tensors(_OP, x, weight, bias)
    r = V.normalize_scale(scale)
    kh, kw = weight.shape[2], weight.shape[3]
    pads = V.resolve_padding(padding, kh, kw, 1)
    V.check_conv_geometry(_OP, x, kh, kw, pads, 1)
    V.check_shuffle_channels(_OP, weight.shape[0], r)
    b = resolve_backend(backend, x.device, _OP)
    V.check_backend_dtype(_OP, x.dtype, b)
    return _conv_relu_upsample_op(x, weight, bias, *pads, r, b)
