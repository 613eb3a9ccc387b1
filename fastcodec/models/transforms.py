"""Analysis and synthesis transforms of the learned codec, built on the fused conv modules.

Analysis ``g_a``: four :class:`~fastcodec.nn.ConvReLUPool2d` blocks (stride-1 conv, ReLU, 2x2
pool: 1/2 resolution each, 1/16 after four), then a plain 3x3 ``Conv2d`` head from ``N`` to ``M``
channels at 1/16 resolution. The head exists because the latent must be signed: a ReLU (and a max
pool) at the end of the analysis would leave only non-negative values, wasting half of every
quantization grid and clipping the zero bin where the density is highest. A plain conv after the
fourth pooled block keeps all four full- and reduced-resolution blocks fused (they hold >97 % of
the analysis FLOPs; the head runs on 1/256 of the pixels).

Synthesis ``g_s``: four :class:`~fastcodec.nn.ConvReLUUpsample2d` blocks (conv, ReLU, pixel
shuffle x2: back to full resolution), then a plain conv to RGB with no activation (the output
is compared to the input in [0, 1] but must be free to overshoot while training; it is clamped
only when an image is written). The first block takes the signed quantized latent directly: the
conv before its ReLU is linear in it, so no information is lost.

Linear skips (``skip=True``): blocks also get a cheap linear path around them, added to their
output: a 2x2 stride-2 conv in the analysis (= space-to-depth + 1x1 conv; every block) and a 2x2
stride-2 transposed conv in the synthesis (= 1x1 conv + depth-to-space, one bias per output
channel; every block but the last, full-resolution one, where it would cost 10 % of the decoder
and a pixel shuffle loses nothing anyway). Space-to-depth is invertible, so the transform pair
can always pass through what a conv + ReLU + pool block throws away (the phase of detail inside
each pooling window). They cost about 1 (analysis) and 1.4 (synthesis) kMAC per pixel and run as
single oneDNN / cuDNN convolutions (4x faster on CPU than an explicit pixel (un)shuffle).
Zero-initialized: a model gains them without changing its function
(:mod:`fastcodec.models.slim`).

Widths: ``N`` hidden channels everywhere except at full resolution, where the layers are the
most expensive per output channel: the first analysis block outputs ``first_width`` (default
``N``) and the last upsampling block outputs ``last_width`` (default ``N // 2``; the RGB head
does not need more). The fourth analysis block outputs ``head_width`` (default ``N``) at 1/16
resolution: everything the latent can hold passes through it, so it should be about ``M``
wide. At ``N`` = 64 it caps the latent at 64 values per 16x16 pixels (1/12 of the input),
which on validation crops matches the PSNR of a 64-component block PCA (25.7 dB): a ceiling
no amount of rate lifts. It runs on 1/64 of the pixels, so widening it is cheap.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastcodec.nn import ConvReLUPool2d, ConvReLUUpsample2d

__all__ = ["AnalysisTransform", "SynthesisTransform", "block_with_skip"]


def _kernels(kernels: Sequence[int] | int, n: int = 4) -> list[int]:
    ks = [int(kernels)] * n if isinstance(kernels, int) else [int(k) for k in kernels]
    if len(ks) != n or any(k < 1 or k > 7 or k % 2 == 0 for k in ks):
        raise ValueError(f"expected {n} odd kernel sizes in 1..7, got {kernels!r}")
    return ks


def _skips(conv, c_in: Sequence[int], c_out: Sequence[int]) -> nn.ModuleList:
    """Zero-initialized 2x2 stride-2 ``conv`` layers ``c_in[i] -> c_out[i]`` (the linear skip
    paths; ``conv`` is ``nn.Conv2d`` or ``nn.ConvTranspose2d``)."""
    convs = nn.ModuleList(conv(a, b, 2, stride=2) for a, b in zip(c_in, c_out))
    for conv in convs:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return convs


class _SkipUp(nn.ConvTranspose2d):
    """Transposed conv that runs with a contiguous weight: oneDNN's channels-last kernel for a
    channels-last weight is ~1.5x slower (the weight is tiny; the copy costs nothing)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight.contiguous(), self.bias, self.stride)


def block_with_skip(block: nn.Module, skips: Optional[nn.ModuleList], i: int, x: Tensor) -> Tensor:
    """``block(x)`` plus skip ``i`` of ``x`` when there is one (added in place outside autograd:
    the block's output is a fresh tensor)."""
    out = block(x)
    if skips is None or i >= len(skips):
        return out
    s = skips[i](x)
    return out.add_(s) if not torch.is_grad_enabled() else out + s


class AnalysisTransform(nn.Module):
    """``x [B, 3, H, W]`` (H, W multiples of 16) -> signed latent ``y [B, M, H/16, W/16]``."""

    def __init__(
        self,
        N: int = 64,
        M: int = 128,
        kernels: Sequence[int] | int = (5, 3, 3, 3),
        pool: str = "avg",
        head_kernel: int = 3,
        first_width: Optional[int] = None,
        skip: bool = False,
        backend: Optional[str] = None,
        head_width: Optional[int] = None,
    ) -> None:
        super().__init__()
        ks = _kernels(kernels)
        first = N if first_width is None else int(first_width)
        head = N if head_width is None else int(head_width)
        chans = [3, first, N, N, head]
        self.skips = _skips(nn.Conv2d, chans[:4], chans[1:]) if skip else None
        self.blocks = nn.ModuleList(
            ConvReLUPool2d(
                chans[i], chans[i + 1], ks[i], stride=1, padding=ks[i] // 2, pool=pool,
                pool_size=2, backend=backend,
            )
            for i in range(4)
        )
        self.head = nn.Conv2d(head, M, head_kernel, padding=head_kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block_with_skip(block, self.skips, i, x)
        return self.head(x)


class SynthesisTransform(nn.Module):
    """``y_hat [B, M, h, w]`` -> ``x_hat [B, 3, 16h, 16w]`` (unclamped)."""

    def __init__(
        self,
        N: int = 64,
        M: int = 128,
        kernels: Sequence[int] | int = (3, 3, 3, 3),
        last_width: Optional[int] = None,
        out_kernel: int = 3,
        skip: bool = False,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        ks = _kernels(kernels)
        last = N // 2 if last_width is None else int(last_width)
        chans = [M, N, N, N, last]
        self.skips = _skips(_SkipUp, chans[:3], chans[1:4]) if skip else None
        self.blocks = nn.ModuleList(
            ConvReLUUpsample2d(
                chans[i], chans[i + 1], ks[i], padding=ks[i] // 2, scale=2, backend=backend
            )
            for i in range(4)
        )
        self.out = nn.Conv2d(last, 3, out_kernel, padding=out_kernel // 2)

    def forward(self, y: Tensor) -> Tensor:
        for i, block in enumerate(self.blocks):
            y = block_with_skip(block, self.skips, i, y)
        return self.out(y)
