"""Tiled analysis and synthesis: bounded activation memory for very large images.

Every layer of ``g_a`` / ``g_s`` is local (convolutions, 2x2 pools, pixel shuffles), so an
output pixel depends only on inputs within a fixed radius. The image is cut into tiles on the
latent grid (1 latent pixel = 16x16 image pixels); each tile is run with a halo of
:func:`receptive_halo_analysis` / :func:`receptive_halo_synthesis` latent pixels around it
(clipped at the image border, where the convolutions' zero padding is the whole-image pass's),
and only the tile's interior is kept. The interior is then exactly the untiled result (up to
floating-point summation order), and peak activation memory follows the tile, not the image.

Both functions are meant for inference: call them under ``torch.no_grad()`` or
``torch.inference_mode()``.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from fastcodec.ops._validate import memory_format_of

__all__ = [
    "LATENT_STRIDE",
    "analysis_tiled",
    "receptive_halo_analysis",
    "receptive_halo_synthesis",
    "synthesis_tiled",
]

#: Image pixels per latent pixel along each side.
LATENT_STRIDE = 16
#: Extra latent pixels added to the receptive-field radius.
_SAFETY_MARGIN = 1


def _reach(kernel_size) -> int:
    """Pixels a conv of ``kernel_size`` (int or pair) reads on each side of its centre."""
    sizes = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return max(int(k) for k in sizes) // 2


def _pair_first(value) -> int:
    """``s`` from ``s`` or ``(s, s)``."""
    return int(value if isinstance(value, int) else value[0])


def receptive_halo_analysis(g_a: nn.Module) -> int:
    """Halo in latent pixels (int >= 1) that makes tiled ``g_a`` exact.

    Radius in image pixels: a conv of kernel ``k`` at a resolution where one pixel is ``s``
    image pixels adds ``(k // 2) * s``; a pool of size ``p`` adds ``(p - 1) * s`` (then
    ``s *= p``). The radius is rounded up to latent pixels, plus a safety margin of 1.
    ``g_a`` needs ``blocks`` (with ``kernel_size``, ``stride``, ``pool_size``) and ``head``.
    """
    radius, scale = 0, 1  # image pixels; image pixels per pixel at the current resolution
    for block in g_a.blocks:
        radius += _reach(block.kernel_size) * scale
        scale *= _pair_first(block.stride)
        pool = int(block.pool_size)
        radius += (pool - 1) * scale
        scale *= pool
    radius += _reach(g_a.head.kernel_size) * scale
    scale *= _pair_first(g_a.head.stride)
    if scale != LATENT_STRIDE:
        raise ValueError(f"g_a reduces the resolution {scale}x, tiling needs {LATENT_STRIDE}x")
    return math.ceil(radius / LATENT_STRIDE) + _SAFETY_MARGIN


def receptive_halo_synthesis(g_s: nn.Module) -> int:
    """Halo in latent pixels (int >= 1) that makes tiled ``g_s`` exact.

    Radius in latent pixels: a conv of kernel ``k`` at a resolution where one pixel is
    ``1 / 2**j`` latent pixels adds ``(k // 2) / 2**j``; a pixel shuffle of ``scale`` adds
    nothing (it divides the pixel size). Rounded up, plus a safety margin of 1.
    ``g_s`` needs ``blocks`` (with ``kernel_size``, ``scale``) and ``out``.
    """
    radius, pixel = 0.0, 1.0  # latent pixels; latent pixels per pixel at this resolution
    for block in g_s.blocks:
        radius += _reach(block.kernel_size) * pixel
        pixel /= int(block.scale)
    radius += _reach(g_s.out.kernel_size) * pixel
    if round(1.0 / pixel) != LATENT_STRIDE:
        raise ValueError(f"g_s raises the resolution {round(1 / pixel)}x, tiling needs "
                         f"{LATENT_STRIDE}x")
    return math.ceil(radius) + _SAFETY_MARGIN


def _spans(length: int, tile: int) -> List[Tuple[int, int]]:
    """``[start, stop)`` tiles of at most ``tile`` covering ``range(length)`` (latent px)."""
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def _grow(span: Tuple[int, int], halo: int, length: int) -> Tuple[int, int]:
    """``span`` widened by ``halo`` on each side, clipped to ``[0, length)``."""
    return max(0, span[0] - halo), min(length, span[1] + halo)


def _scaled(span: Tuple[int, int], scale: int, origin: int = 0) -> slice:
    """Slice of ``span`` (latent px) at ``scale`` pixels per latent pixel, from ``origin``."""
    return slice((span[0] - origin) * scale, (span[1] - origin) * scale)


def _run_tiled(fn: Callable[[Tensor], Tensor], inp: Tensor, grid: Tuple[int, int], tile: int,
               halo: int, in_scale: int, out_scale: int) -> Tensor:
    """Runs ``fn`` tile by tile on a ``grid`` of (rows, cols) latent pixels.

    ``inp`` has ``in_scale`` and ``fn``'s output ``out_scale`` pixels per latent pixel; each
    tile of ``tile`` latent pixels is run with ``halo`` latent pixels around it (clipped at the
    border) and its interior written into one preallocated output (``fn``'s dtype, device and
    memory format)."""
    rows, cols = grid
    in_format = memory_format_of(inp)
    out: Optional[Tensor] = None
    for row_span in _spans(rows, tile):
        row_grown = _grow(row_span, halo, rows)
        for col_span in _spans(cols, tile):
            col_grown = _grow(col_span, halo, cols)
            piece = inp[..., _scaled(row_grown, in_scale), _scaled(col_grown, in_scale)]
            result = fn(piece.contiguous(memory_format=in_format))
            if out is None:
                shape = (*result.shape[:2], rows * out_scale, cols * out_scale)
                out = torch.empty(shape, dtype=result.dtype, device=result.device,
                                  memory_format=memory_format_of(result))
            interior = result[..., _scaled(row_span, out_scale, row_grown[0]),
                              _scaled(col_span, out_scale, col_grown[0])]
            out[..., _scaled(row_span, out_scale), _scaled(col_span, out_scale)] = interior
    return out


def _check_tile(tile: int, unit: str) -> int:
    """``tile`` as an int; ValueError unless it is a positive integer."""
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 1:
        raise ValueError(f"tile must be a positive int ({unit}), got {tile!r}")
    return int(tile)


def _check_halo(halo: Optional[int]) -> Optional[int]:
    """``halo`` (latent pixels) as an int or None; ValueError unless it is >= 0."""
    if halo is None:
        return None
    if isinstance(halo, bool) or not isinstance(halo, numbers.Integral) or halo < 0:
        raise ValueError(f"halo must be a non-negative int (latent pixels), got {halo!r}")
    return int(halo)


def analysis_tiled(g_a: nn.Module, x: Tensor, tile: int, halo: Optional[int] = None) -> Tensor:
    """``g_a(x)`` computed tile by tile.

    Args:
        g_a: the analysis transform (``[B, 3, H, W]`` -> ``[B, M, H/16, W/16]``).
        x: float image ``[B, 3, H, W]``, ``H`` and ``W`` multiples of 16 (any memory format).
        tile: tile side in image pixels, a positive multiple of 16.
        halo: halo in latent pixels (None: :func:`receptive_halo_analysis`).

    Returns ``[B, M, H/16, W/16]`` with ``g_a``'s dtype and memory format; a single ``g_a``
    call when the image fits in one tile.
    """
    tile, halo = _check_tile(tile, "image pixels"), _check_halo(halo)
    if tile % LATENT_STRIDE:
        raise ValueError(f"tile must be a multiple of {LATENT_STRIDE} image pixels, got {tile}")
    height, width = x.shape[-2:]
    if height % LATENT_STRIDE or width % LATENT_STRIDE:
        raise ValueError(f"image sides must be multiples of {LATENT_STRIDE}, got {height}x{width}")
    if height <= tile and width <= tile:
        return g_a(x)
    halo = receptive_halo_analysis(g_a) if halo is None else halo
    grid = (height // LATENT_STRIDE, width // LATENT_STRIDE)
    return _run_tiled(g_a, x, grid, tile // LATENT_STRIDE, halo, LATENT_STRIDE, 1)


def synthesis_tiled(g_s: nn.Module, y: Tensor, tile: int, halo: Optional[int] = None) -> Tensor:
    """``g_s(y)`` computed tile by tile.

    Args:
        g_s: the synthesis transform (``[B, M, h, w]`` -> ``[B, 3, 16h, 16w]``).
        y: float latent ``[B, M, h, w]`` (any memory format).
        tile: tile side in latent pixels (positive).
        halo: halo in latent pixels (None: :func:`receptive_halo_synthesis`).

    Returns ``[B, 3, 16h, 16w]`` with ``g_s``'s dtype and memory format; a single ``g_s``
    call when the latent fits in one tile.
    """
    tile, halo = _check_tile(tile, "latent pixels"), _check_halo(halo)
    rows, cols = y.shape[-2:]
    if rows <= tile and cols <= tile:
        return g_s(y)
    halo = receptive_halo_synthesis(g_s) if halo is None else halo
    return _run_tiled(g_s, y, (rows, cols), tile, halo, 1, LATENT_STRIDE)
