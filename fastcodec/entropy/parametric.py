"""CDF tables for parametric discrete distributions (discretized zero-mean Laplace).

Used by the benchmarks and tests as the standard latent workload, and by anyone who models
latents with per-channel scales: one table row per scale, symbols centred on zero.
"""

from __future__ import annotations

import math

import numpy as np

from fastcodec.entropy.cdf import pack_cdfs, pmf_to_quantized_cdf


def laplace_cdf_tables(
    scales, precision: int = 16, tail_mass: float = 1e-9, max_symbols: int = 255
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables for discretized zero-mean Laplace distributions, one row per scale.

    Row ``t`` covers the integers ``-h..h`` with ``h = ceil(b * ln(1 / tail_mass))`` (each tail
    beyond ``h`` holds at most ``tail_mass / 2``), capped so there are at most ``max_symbols``
    values; the mass outside goes to the escape bin.

    Args:
        scales: float ``[T]`` Laplace scales ``b`` (> 0), in symbol units.
        precision: table precision in bits (1 to 16).
        tail_mass: probability left outside the support (before the ``max_symbols`` cap).
        max_symbols: largest number of regular symbols per row (odd numbers keep it symmetric).

    Returns:
        ``(cdfs int32 [T, max_length], cdf_lengths int32 [T], offsets int32 [T])`` in the range
        coder's convention.
    """
    b = np.asarray(scales, dtype=np.float64).reshape(-1)
    if b.size and (not np.all(np.isfinite(b)) or np.any(b <= 0)):
        raise ValueError("scales must be finite and positive")
    if not 0 < tail_mass < 1:
        raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
    rows, offsets = [], []
    for scale in b:
        half = min(math.ceil(scale * math.log(1.0 / tail_mass)), (max_symbols - 1) // 2)
        x = np.arange(-half, half + 1, dtype=np.float64)
        upper = _laplace_cdf(x + 0.5, scale)
        lower = _laplace_cdf(x - 0.5, scale)
        pmf = upper - lower
        escape = max(1.0 - pmf.sum(), 0.0)
        rows.append(pmf_to_quantized_cdf(np.append(pmf, escape), precision))
        offsets.append(-half)
    cdfs, lengths = pack_cdfs(rows)
    return cdfs, lengths, np.asarray(offsets, dtype=np.int32)


def _laplace_cdf(t: np.ndarray, scale: float) -> np.ndarray:
    return np.where(t < 0, 0.5 * np.exp(t / scale), 1.0 - 0.5 * np.exp(-t / scale))
