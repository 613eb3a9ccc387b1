"""The range-coder benchmark workload: a factorized-prior-like latent.

``C`` channels, channel ``c`` a discretized zero-mean Laplace with its own scale ``b_c`` drawn
log-uniformly in ``[0.1, 20]``. The tables are :func:`fastcodec.entropy.parametric.laplace_cdf_tables`
of those scales (support ``±ceil(b ln 1e9)`` capped at 255 values, 16-bit, escape bin last), the
symbols are ``round(Laplace(0, b_c))`` samples of shape ``[B, C, H, W]`` and the indexes are the
channel of each symbol (``[C, H, W]``, shared by the ``B`` images); one stream per image.

Everything is drawn from one fixed seed, so the workload (and every coder's output size) is the
same from run to run and machine to machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fastcodec.entropy.parametric import laplace_cdf_tables

#: ``(B, C, H, W)`` of the full benchmark: 8 images of a 192-channel latent of a 512x768 image.
FULL_SHAPE = (8, 192, 32, 48)
#: ``(B, C, H, W)`` used with ``--quick`` (CI).
QUICK_SHAPE = (2, 192, 8, 12)
SEED = 20240611
SCALE_RANGE = (0.1, 20.0)
PRECISION = 16


@dataclass
class Workload:
    shape: tuple[int, int, int, int]  # (B, C, H, W)
    seed: int
    scales: np.ndarray  # float64 [C]
    cdfs: np.ndarray  # int32 [C, max_length]
    cdf_lengths: np.ndarray  # int32 [C]
    offsets: np.ndarray  # int32 [C]
    precision: int
    symbols: np.ndarray  # int32 [B, C, H, W]
    indexes: np.ndarray  # int32 [C, H, W] (channel of each symbol, shared by the images)
    bins: np.ndarray = field(repr=False)  # int32 [B, C, H, W]: coded bin (escape bin if outside)
    ideal_bits: float = 0.0  # table cross-entropy of all symbols, bits (see ideal_bits())
    num_escapes: int = 0  # symbols outside their row's support (coded through the escape bin)

    @property
    def num_streams(self) -> int:
        return self.shape[0]

    @property
    def num_symbols(self) -> int:
        return int(self.symbols.size)

    @property
    def symbols_per_stream(self) -> int:
        return int(self.symbols[0].size)

    @property
    def ideal_bits_per_symbol(self) -> float:
        return self.ideal_bits / self.num_symbols

    def describe(self) -> str:
        b, c, h, w = self.shape
        return (
            f"{b}x{c}x{h}x{w} = {self.num_symbols:,} symbols in {b} streams, "
            f"{c} Laplace tables (scales {self.scales.min():.2f}..{self.scales.max():.2f}, "
            f"{int(self.cdf_lengths.min()) - 2}..{int(self.cdf_lengths.max()) - 2} values + escape, "
            f"{self.precision}-bit), seed {self.seed}"
        )


def coded_bins(symbols, indexes, cdf_lengths, offsets) -> np.ndarray:
    """The bin each symbol is coded with: ``s - offset`` inside the row's support, else the
    escape bin ``cdf_lengths - 2`` (whose value then goes in the coder's bypass code)."""
    idx = np.broadcast_to(indexes, symbols.shape)
    v = symbols.astype(np.int64) - offsets[idx]
    escape = (cdf_lengths[idx] - 2).astype(np.int64)
    inside = (v >= 0) & (v < escape)
    return np.where(inside, v, escape).astype(np.int32)


def ideal_bits(bins, indexes, cdfs, precision: int) -> float:
    """Cross-entropy of the coded bins under the quantized tables, in bits:
    ``sum(precision - log2(freq[bin]))``.

    This is what an ideal entropy coder using exactly these tables would spend. It does not
    count the bypass payload of escaped values (their bin is counted, their value is not) nor
    any per-stream overhead (final coder states, padding).
    """
    freqs = np.diff(cdfs.astype(np.int64), axis=1)
    idx = np.broadcast_to(indexes, bins.shape)
    f = freqs[idx, bins]
    if np.any(f <= 0):
        raise ValueError("a coded bin has zero frequency")
    return float(precision * bins.size - np.log2(f.astype(np.float64)).sum())


def build_workload(shape=FULL_SHAPE, seed: int = SEED, precision: int = PRECISION) -> Workload:
    """Builds the workload of the given ``(B, C, H, W)`` shape (deterministic in ``seed``)."""
    batch, channels, height, width = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    lo, hi = SCALE_RANGE
    scales = np.exp(rng.uniform(math.log(lo), math.log(hi), size=channels))
    cdfs, cdf_lengths, offsets = laplace_cdf_tables(scales, precision=precision)

    noise = rng.laplace(0.0, 1.0, size=(batch, channels, height, width))
    symbols = np.rint(noise * scales[None, :, None, None]).astype(np.int32)
    indexes = np.ascontiguousarray(
        np.broadcast_to(np.arange(channels, dtype=np.int32)[:, None, None], (channels, height, width))
    )
    bins = coded_bins(symbols, indexes, cdf_lengths, offsets)
    escapes = int(np.count_nonzero(bins == (cdf_lengths[indexes] - 2)[None]))
    return Workload(
        shape=(batch, channels, height, width),
        seed=seed,
        scales=scales,
        cdfs=cdfs,
        cdf_lengths=cdf_lengths,
        offsets=offsets,
        precision=precision,
        symbols=symbols,
        indexes=indexes,
        bins=bins,
        ideal_bits=ideal_bits(bins, indexes, cdfs, precision),
        num_escapes=escapes,
    )


if __name__ == "__main__":  # quick look: python benches/coder_workload.py
    for s in (QUICK_SHAPE, FULL_SHAPE):
        w = build_workload(s)
        print(w.describe())
        print(f"  ideal {w.ideal_bits_per_symbol:.4f} bits/symbol, {w.num_escapes} escapes")
