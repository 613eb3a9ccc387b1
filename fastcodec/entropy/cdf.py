"""Quantized CDF tables: from floating-point probabilities to the integers the coder uses.

A row is built the way CompressAI's entropy models build theirs: the probabilities of the
regular symbols followed by the tail mass (the escape bin), scaled to ``2**precision`` with every
bin kept at a probability of at least ``2**-precision``. Quantization is done here, once, on the
encoder's side of the export; coding then uses only the integers, so it is bit-exact everywhere.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np


def pmf_to_quantized_cdf(pmf, precision: int = 16) -> np.ndarray:
    """Quantizes a probability vector to an integer CDF.

    Args:
        pmf: float ``[n]`` non-negative probabilities (any positive total; the last entry is the
            escape bin when the row is used for coding), ``1 <= n <= 2**precision``.
        precision: bits of resolution, 1 to 16.

    Returns:
        int32 ``[n + 1]``: ``0 = cdf[0] < cdf[1] < ... < cdf[n] = 2**precision``. Frequencies are
        chosen to minimise the expected code length under ``pmf`` given that every bin keeps at
        least one unit: rounding, then single-unit moves until none improves ``sum(p * log(f))``
        (exact, since the objective is separable and concave).
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"pmf must be a non-empty 1-D array, got shape {p.shape}")
    if not (1 <= precision <= 16):
        raise ValueError(f"precision must be in [1, 16], got {precision}")
    total = 1 << precision
    if p.size > total:
        raise ValueError(f"{p.size} bins do not fit in 2**{precision} = {total} units")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("pmf must be finite, non-negative and have a positive sum")
    p = p / p.sum()

    freq = np.maximum(1, np.round(p * total)).astype(np.int64)
    excess = int(freq.sum()) - total
    if excess < 0:  # hand out the missing units where they buy the most log-likelihood
        gain = [(-p[i] * np.log1p(1.0 / freq[i]), i) for i in range(p.size)]
        heapq.heapify(gain)
        for _ in range(-excess):
            _, i = heapq.heappop(gain)
            freq[i] += 1
            heapq.heappush(gain, (-p[i] * np.log1p(1.0 / freq[i]), i))
    elif excess > 0:  # take units back where they cost the least
        cost = [(p[i] * -np.log1p(-1.0 / freq[i]), i) for i in range(p.size) if freq[i] > 1]
        heapq.heapify(cost)
        for _ in range(excess):
            _, i = heapq.heappop(cost)
            freq[i] -= 1
            if freq[i] > 1:
                heapq.heappush(cost, (p[i] * -np.log1p(-1.0 / freq[i]), i))
    _exchange_to_optimum(p, freq)
    cdf = np.zeros(p.size + 1, dtype=np.int64)
    np.cumsum(freq, out=cdf[1:])
    return cdf.astype(np.int32)


def _exchange_to_optimum(p: np.ndarray, freq: np.ndarray) -> None:
    """Moves single units from the bin where one costs least to the bin where one gains most,
    while that improves ``sum(p * log(freq))``. The objective is separable and concave, so a
    state no single move improves is the optimum. Starts close to it, so few moves are needed."""
    while True:
        gain = p * np.log1p(1.0 / freq)
        loss = np.where(freq > 1, p * -np.log1p(-1.0 / np.maximum(freq, 2)), np.inf)
        i, j = int(np.argmax(gain)), int(np.argmin(loss))
        if i == j or gain[i] <= loss[j] * (1 + 1e-12):
            return
        freq[i] += 1
        freq[j] -= 1


def pack_cdfs(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pads CDF rows of different lengths into the coder's layout.

    Returns:
        ``cdfs`` int32 ``[len(rows), max_length]`` (padding repeats the last entry) and
        ``cdf_lengths`` int32 ``[len(rows)]``.
    """
    arrays = [np.asarray(r) for r in rows]
    for i, row in enumerate(arrays):
        if row.ndim != 1:
            raise ValueError(f"CDF row {i} must be 1-D, got shape {row.shape}")
        if row.size and not np.issubdtype(row.dtype, np.integer):
            raise ValueError(f"CDF row {i} must hold integers, got dtype {row.dtype}")
        if row.size and (row.min() < np.iinfo(np.int32).min or row.max() > np.iinfo(np.int32).max):
            raise ValueError(f"CDF row {i} has values outside the int32 range")
    lengths = np.array([r.size for r in arrays], dtype=np.int32)
    width = int(lengths.max()) if arrays else 0
    cdfs = np.zeros((len(arrays), width), dtype=np.int32)
    for i, row in enumerate(arrays):
        cdfs[i, : row.size] = row
        cdfs[i, row.size :] = row[-1] if row.size else 0
    return cdfs, lengths


def min_code_bits(cdfs, cdf_lengths, precision: int = 16) -> np.ndarray:
    """The fewest bits any symbol of each row can cost: ``-log2(largest frequency / 2**precision)``,
    float64 ``[rows]`` (``cdfs`` int ``[rows, L]`` padded, ``cdf_lengths`` ``[rows]``, as
    :func:`pack_cdfs` gives them). ``count`` symbols coded with row ``r`` take at least
    ``count * min_code_bits[r]`` bits of any entropy coder's output (escapes cost more), which
    bounds a stream's size from below before decoding it."""
    cdfs = np.asarray(cdfs, np.int64)
    lengths = np.asarray(cdf_lengths)
    cols = np.arange(cdfs.shape[1] - 1)
    freqs = np.diff(cdfs, axis=1)
    freqs[cols[None, :] >= (lengths[:, None] - 1)] = 0  # padding
    largest = np.maximum(freqs.max(axis=1, initial=0), 1)
    return np.maximum(0.0, precision - np.log2(largest.astype(np.float64)))
