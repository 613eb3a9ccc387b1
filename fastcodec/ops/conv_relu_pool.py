"""``conv_relu_pool``: fused ``pool(relu(conv2d(x, weight, bias)))``.

The public function validates its arguments, resolves the padding and the backend in Python and
calls the custom op ``torch.ops.fastcodec.conv_relu_pool``, whose schema holds only tensors,
ints and strings::

    conv_relu_pool(Tensor x, Tensor weight, Tensor? bias, SymInt stride, SymInt pad_top,
                   SymInt pad_bottom, SymInt pad_left, SymInt pad_right, str pool,
                   SymInt pool_size, str backend) -> Tensor

The op is opaque to ``torch.compile`` / ``torch.export`` (its fake implementation gives shape,
dtype and memory format) and differentiable through ``register_autograd`` (see
:func:`_backward`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _validate as V
from ._backend import launch_kernel, resolve_backend
from ._conv import conv_relu, padded_conv, padded_conv_backward

_OP = "conv_relu_pool"
aten = torch.ops.aten


def _reference(x, weight, bias, stride, pads, pool: str, pool_size: int) -> Tensor:
    z = conv_relu(x, weight, bias, stride, pads)
    if pool == "max":
        return F.max_pool2d(z, pool_size)
    return F.avg_pool2d(z, pool_size)


def _out_shape(x: Tensor, weight: Tensor, stride, pt, pb, pl, pr, pool_size):
    oh = V.conv_output_size(x.shape[2], weight.shape[2], pt, pb, stride)
    ow = V.conv_output_size(x.shape[3], weight.shape[3], pl, pr, stride)
    return oh, ow, (x.shape[0], weight.shape[0], oh // pool_size, ow // pool_size)


@torch.library.custom_op("fastcodec::conv_relu_pool", mutates_args=())
def _conv_relu_pool_op(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: int,
    pad_top: int,
    pad_bottom: int,
    pad_left: int,
    pad_right: int,
    pool: str,
    pool_size: int,
    backend: str,
) -> Tensor:
    fmt = V.memory_format_of(x)
    pads = (pad_top, pad_bottom, pad_left, pad_right)
    oh, ow, shape = _out_shape(x, weight, stride, *pads, pool_size)
    if backend == "torch" or x.numel() == 0:
        out = _reference(x, weight, bias, stride, pads, pool, pool_size)
        return out.contiguous(memory_format=fmt)
    return launch_kernel(
        _OP, backend, x, weight, bias, fmt, shape,
        stride=stride, pad_top=pad_top, pad_left=pad_left, out_h=oh, out_w=ow,
        pool=pool, pool_size=pool_size,
    )


@_conv_relu_pool_op.register_fake
def _conv_relu_pool_fake(
    x, weight, bias, stride, pad_top, pad_bottom, pad_left, pad_right, pool, pool_size, backend
):
    _, _, shape = _out_shape(x, weight, stride, pad_top, pad_bottom, pad_left, pad_right, pool_size)
    return torch.empty(
        shape, dtype=x.dtype, device=x.device, memory_format=V.memory_format_of(x)
    )


def _setup_context(ctx, inputs, output):
    x, weight, bias, stride, pt, pb, pl, pr, pool, pool_size, _backend = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.geometry = (stride, (pt, pb, pl, pr), pool, pool_size)


def _backward(ctx, grad_out):
    """Gradients of ``pool(relu(conv(x)))`` from recomputation.

    The convolution output is recomputed from the saved ``x, weight, bias`` (cuDNN/oneDNN),
    then the pooling backward (``max_pool2d_with_indices[_backward]`` / ``avg_pool2d_backward``),
    the ReLU backward (``threshold_backward``) and ``convolution_backward`` are applied — the
    same ATen backward kernels autograd uses for the unfused composition. Works for any dtype
    the forward takes (float64 included). Built from differentiable ATen ops on the saved
    inputs, so ``create_graph=True`` records a graph too (tested with gradgradcheck).
    """
    x, weight, bias = ctx.saved_tensors
    stride, pads, pool, k = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    y, xp = padded_conv(x, weight, bias, stride, pads)
    z = aten.relu(y)
    if pool == "max":
        _, idx = aten.max_pool2d_with_indices(z, [k, k], [k, k])
        gz = aten.max_pool2d_with_indices_backward(
            grad_out, z, [k, k], [k, k], [0, 0], [1, 1], False, idx
        )
    else:
        gz = aten.avg_pool2d_backward(grad_out, z, [k, k], [k, k], [0, 0], False, True, None)
    gy = aten.threshold_backward(gz, z, 0)
    gx, gw, gb = padded_conv_backward(
        gy, x, xp, weight, bias, stride, pads, (need_x, need_w, need_b)
    )
    return (gx, gw, gb) + (None,) * 8


_conv_relu_pool_op.register_autograd(_backward, setup_context=_setup_context)


def conv_relu_pool(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    *,
    stride=1,
    padding=0,
    pool: str = "max",
    pool_size: int = 2,
    backend: Optional[str] = None,
) -> Tensor:
    """Fused convolution + ReLU + pooling.

    Returns exactly ``F.max_pool2d(F.relu(F.conv2d(x, weight, bias, stride, padding)),
    pool_size)`` (``pool="avg"``: ``F.avg_pool2d``; floor mode, window = stride = pool_size).

    NaNs propagate as in that composition, with one exception: the ``"torch"`` backend on CPU for
    float32/bfloat16, where oneDNN applies the ReLU inside the convolution (when
    ``torch.backends.mkldnn`` is enabled and, for bfloat16, the CPU supports it), maps a NaN of the
    convolution output to 0 at the ReLU, so it does not reach the output (it counts as 0 in its
    pooling window). Checking for NaN would cost a pass over the data; for NaN propagation there,
    run under ``torch.backends.mkldnn.flags(enabled=False)`` (the unfused composition, slower).

    Args:
        x: ``[N, C_in, H, W]``, float32/float16/bfloat16 (float64 with ``backend="torch"``),
            NCHW or channels_last (the output has the same memory format). ``N`` may be 0.
        weight: ``[C_out, C_in, kH, kW]`` with ``1 <= kH, kW <= 7`` (groups = 1, no dilation).
        bias: ``[C_out]`` or None.
        stride: 1 or 2 (an int or an equal pair).
        padding: int >= 0, a pair ``(ph, pw)``, ``"valid"`` or ``"same"`` (stride 1 only;
            even kernels pad the extra row/column at the bottom/right, as ``F.conv2d`` does).
        pool: ``"max"`` or ``"avg"``.
        pool_size: pooling window and stride, >= 1. The convolution output must be at least
            this large (PyTorch raises otherwise; so does this function).
        backend: ``"triton"``, ``"cuda"``, ``"torch"`` or None (the ``FASTCODEC_BACKEND``
            environment variable, else the default; see :mod:`fastcodec.ops._backend`).
    """
    x, weight, bias = V.apply_autocast(x, weight, bias)
    V.check_tensors(_OP, x, weight, bias)
    s = V.normalize_stride(stride)
    pool = V.normalize_pool(pool)
    k = V.normalize_pool_size(pool_size)
    kh, kw = weight.shape[2], weight.shape[3]
    pads = V.resolve_padding(padding, kh, kw, s)
    oh, ow = V.check_conv_geometry(_OP, x, kh, kw, pads, s)
    V.check_pool_geometry(_OP, oh, ow, k)
    b = resolve_backend(backend, x.device, _OP)
    V.check_backend_dtype(_OP, x.dtype, b)
    return _conv_relu_pool_op(x, weight, bias, s, *pads, pool, k, b)
