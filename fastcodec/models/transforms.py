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

Widths: ``N`` hidden channels everywhere except at full resolution, where the layers are the
most expensive per output channel: the first analysis block outputs ``first_width`` (default
``N``) and the last upsampling block outputs ``last_width`` (default ``N // 2``; the RGB head
does not need more).
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from fastcodec.nn import ConvReLUPool2d, ConvReLUUpsample2d

__all__ = ["AnalysisTransform", "SynthesisTransform"]


def _kernels(kernels: Sequence[int] | int, n: int = 4) -> list[int]:
    ks = [int(kernels)] * n if isinstance(kernels, int) else [int(k) for k in kernels]
    if len(ks) != n or any(k < 1 or k > 7 or k % 2 == 0 for k in ks):
        raise ValueError(f"expected {n} odd kernel sizes in 1..7, got {kernels!r}")
    return ks


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
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        ks = _kernels(kernels)
        chans = [3, N if first_width is None else int(first_width), N, N, N]
        self.blocks = nn.ModuleList(
            ConvReLUPool2d(
                chans[i], chans[i + 1], ks[i], stride=1, padding=ks[i] // 2, pool=pool,
                pool_size=2, backend=backend,
            )
            for i in range(4)
        )
        self.head = nn.Conv2d(N, M, head_kernel, padding=head_kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
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
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        ks = _kernels(kernels)
        last = N // 2 if last_width is None else int(last_width)
        chans = [M, N, N, N, last]
        self.blocks = nn.ModuleList(
            ConvReLUUpsample2d(
                chans[i], chans[i + 1], ks[i], padding=ks[i] // 2, scale=2, backend=backend
            )
            for i in range(4)
        )
        self.out = nn.Conv2d(last, 3, out_kernel, padding=out_kernel // 2)

    def forward(self, y: Tensor) -> Tensor:
        for block in self.blocks:
            y = block(y)
        return self.out(y)
