"""The convolution both fused ops share: F.conv2d with (possibly asymmetric) padding, its
backward from ATen's ``convolution_backward``, and the forward-only ``relu(conv(x))`` of the
``"torch"`` backend, which on CPU lets oneDNN apply the ReLU inside the convolution."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import memory_format_of


def padded_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, pads):
    """``F.conv2d`` with (possibly asymmetric) padding, done the way
    ``F.conv2d(padding="same")`` does it: the extra bottom/right rows are padded explicitly and
    the symmetric part is left to the convolution. Returns ``(y, padded_x)``."""
    pt, pb, pl, pr = pads
    if pb != pt or pr != pl:
        x = F.pad(x, (0, pr - pl, 0, pb - pt))
    return F.conv2d(x, weight, bias, stride, (pt, pl)), x


#: oneDNN with the fused convolution + post-op kernel is in this torch build (checked once).
_ONEDNN_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise")

#: dtypes for the fused oneDNN kernel -> the probe saying this CPU runs them (None: always).
#: bf16 needs AVX512 (BW/VL/DQ) or AVX-NE-CONVERT, where F.conv2d has a fallback.
_ONEDNN_DTYPE_PROBES = {torch.float32: None, torch.bfloat16: "_is_mkldnn_bf16_supported"}
_onednn_dtype_ok: Dict[torch.dtype, bool] = {}


def _onednn_runs(dtype: torch.dtype) -> bool:
    """oneDNN can run ``dtype`` on this CPU (cached: the CPU and its ISA limit do not change)."""
    ok = _onednn_dtype_ok.get(dtype)
    if ok is None:
        ok = False
        if dtype in _ONEDNN_DTYPE_PROBES:
            probe = _ONEDNN_DTYPE_PROBES[dtype]
            try:
                ok = probe is None or (
                    hasattr(torch.ops.mkldnn, probe) and bool(getattr(torch.ops.mkldnn, probe)())
                )
            except Exception:  # a probe that fails says no
                ok = False
        _onednn_dtype_ok[dtype] = ok
    return ok


def _onednn_fusable(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    return (
        _ONEDNN_POINTWISE
        and x.device.type == "cpu"
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and torch._C._get_mkldnn_enabled()  # torch.backends.mkldnn.flags(enabled=False)
        and _onednn_runs(x.dtype)
    )


def conv_relu(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, pads) -> Tensor:
    """``relu(padded_conv(x, ...))`` for the forward passes of the ``"torch"`` backend.

    On CPU (float32, and bfloat16 where oneDNN supports it; ``torch.backends.mkldnn`` enabled)
    the ReLU runs as a oneDNN post-op of the convolution: one pass over the full-resolution
    activations instead of two (about 1.2-1.6x faster per block at codec sizes; same values as
    the composition up to the convolution's summation order, except that oneDNN's ReLU maps NaN
    to 0 where ``F.relu`` keeps it). Elsewhere it is ``F.relu(F.conv2d(...))``. Not
    differentiable: backward passes recompute with :func:`padded_conv`."""
    if not _onednn_fusable(x, weight, bias):
        return F.relu(padded_conv(x, weight, bias, stride, pads)[0])
    pt, pb, pl, pr = pads
    if pb != pt or pr != pl:
        x = F.pad(x, (0, pr - pl, 0, pb - pt))
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight.contiguous(memory_format=memory_format_of(x)), bias, [pt, pl], [stride, stride], [1, 1], 1,
        "relu", [None], "",
    )


def pixel_shuffle(z: Tensor, scale: int) -> Tensor:
    """``F.pixel_shuffle(z, scale)`` in ``z``'s memory format. For a channels-last ``z`` it is
    one copy (``F.pixel_shuffle`` returns NCHW, which would need a second one)."""
    if scale == 1 or memory_format_of(z) != torch.channels_last:
        return F.pixel_shuffle(z, scale)
    n, c, h, w = z.shape
    co = c // (scale * scale)
    # memory [n, h, w, co, i, j] -> [n, h, i, w, j, co]: out[n, co, h*s+i, w*s+j]
    nhwc = z.permute(0, 2, 3, 1).reshape(n, h, w, co, scale, scale)
    out = nhwc.permute(0, 1, 4, 2, 5, 3).reshape(n, h * scale, w * scale, co)
    return out.permute(0, 3, 1, 2)


def padded_conv_backward(
    gy: Tensor,
    x: Tensor,
    xp: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: int,
    pads,
    needs: Tuple[bool, bool, bool],
):
    """Gradients ``(gx, gw, gb)`` of :func:`padded_conv` for the output gradient ``gy``; ``xp`` is
    the padded input it returned; ``needs`` says which of x, weight, bias want a gradient."""
    pt, _, pl, _ = pads
    need_x, need_w, need_b = needs
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gy,
        xp,
        weight,
        None if bias is None else [bias.shape[0]],
        [stride, stride],
        [pt, pl],
        [1, 1],
        False,
        [0, 0],
        1,
        [need_x, need_w, bias is not None and need_b],
    )
    if gx is not None and xp is not x:  # drop the explicit bottom/right padding
        gx = gx[:, :, : x.shape[2], : x.shape[3]]
    return gx, gw, gb
