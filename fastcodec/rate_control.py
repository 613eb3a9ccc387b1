"""Rate control: the grid quality per image that meets a bits-per-pixel or PSNR target.

Both searches bisect the quality grid (21 levels: 5 rounds) for every image at once, coding each
round's candidates in batches (images that share a candidate quality are coded together):

* ``target_bpp``: the highest quality whose coded size is at most ``target_bpp`` bits per pixel
  (the lowest quality when even that is larger: its result says ``met=False``);
* ``target_psnr``: the lowest quality whose decoded RGB PSNR (dB) is at least ``target_psnr``
  (the highest quality when none reaches it, ``met=False``).

Bisection assumes that size and PSNR grow with quality, which holds for the size by
construction (finer quantization of the same latent) and for PSNR on a trained model; a
PSNR search costs one decode per round on top of the encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence


__all__ = ["Choice", "search"]


@dataclass(frozen=True)
class Choice:
    """The outcome for one image: the chosen ``quality``, its ``blob``, the measured ``value``
    (bpp or PSNR dB) and whether the target was ``met``."""

    quality: float
    blob: bytes
    value: float
    met: bool


def search(
    n: int,
    grid: Sequence[float],
    encode: Callable[[List[int], float], List[bytes]],
    measure: Callable[[int, bytes], float],
    target: float,
    *,
    larger_is_better: bool,
) -> List[Choice]:
    """Bisects ``grid`` (ascending qualities) for each of ``n`` images (numbered 0..n-1).

    ``encode(indices, quality) -> blobs`` codes those images at one quality;
    ``measure(index, blob)`` gives the value compared with ``target``. With
    ``larger_is_better`` (PSNR) the answer is the lowest quality with ``value >= target``;
    otherwise (bpp) the highest with ``value <= target``.
    """
    grid = list(grid)
    lo = [0] * n  # search window [lo, hi] of grid indices, per image
    hi = [len(grid) - 1] * n
    best: List[Optional[Choice]] = [None] * n
    fallback: List[Optional[Choice]] = [None] * n

    def ok(value: float) -> bool:
        return value >= target if larger_is_better else value <= target

    while any(lo[i] <= hi[i] for i in range(n)):
        by_level: Dict[int, List[int]] = {}
        for i in range(n):
            if lo[i] <= hi[i]:
                by_level.setdefault((lo[i] + hi[i]) // 2, []).append(i)
        for level, idx in by_level.items():
            blobs = encode(idx, grid[level])
            for i, blob in zip(idx, blobs):
                value = float(measure(i, blob))
                choice = Choice(grid[level], blob, value, ok(value))
                if choice.met:
                    best[i] = choice
                    if larger_is_better:
                        hi[i] = level - 1  # met: try lower qualities
                    else:
                        lo[i] = level + 1  # met: try higher qualities
                else:
                    fallback[i] = choice
                    if larger_is_better:
                        lo[i] = level + 1
                    else:
                        hi[i] = level - 1
    # Unmet images end at the extreme level the bisection tried last (lowest / highest).
    return [b if b is not None else f for b, f in zip(best, fallback)]
