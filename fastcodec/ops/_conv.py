"""The convolution both fused ops share: F.conv2d with (possibly asymmetric) padding, and its
backward from ATen's ``convolution_backward``."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def padded_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, pads):
    """``F.conv2d`` with (possibly asymmetric) padding, done the way
    ``F.conv2d(padding="same")`` does it: the extra bottom/right rows are padded explicitly and
    the symmetric part is left to the convolution. Returns ``(y, padded_x)``."""
    pt, pb, pl, pr = pads
    if pb != pt or pr != pl:
        x = F.pad(x, (0, pr - pl, 0, pb - pt))
    return F.conv2d(x, weight, bias, stride, (pt, pl)), x


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
