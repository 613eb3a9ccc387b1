"""A small lossless image coder on top of the range coder (the demo's workload until the learned
codec lands).

Pipeline: reversible colour transform (G, R-G, B-G) → planar prediction residual
``r = x - (left + up - up_left)`` (a 2-D second difference, undone by two cumulative sums, so
decoding is vectorised) → per-plane empirical CDF tables (255 symbols + escape bin) → one range
coder stream. Bit-exact roundtrip.

Format (little-endian): ``b"FCL1"``, height u32, width u32, then per plane the 256 frequencies of
its table as u16 (the 16-bit table minus one per bin, which never exceeds 2^16 - 256), then the
range coder stream.
"""

from __future__ import annotations

import struct

import numpy as np

from fastcodec.entropy.cdf import pmf_to_quantized_cdf
from fastcodec.rangecoder import CdfTables

MAGIC = b"FCL1"
_HALF = 127  # regular symbols -127..127 per plane, the rest escapes
_BINS = 2 * _HALF + 2  # regular bins + escape bin
_HEADER = struct.Struct("<4sII")
_MAX_PIXELS = 1 << 28


def _planes(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] → int32 [3, H, W] planes (G, R-G, B-G)."""
    rgb = image.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([g, r - g, b - g])


def _image(planes: np.ndarray) -> np.ndarray:
    """Planes (G, R-G, B-G) → uint8 [H, W, 3]; ValueError if a pixel leaves 0..255."""
    g, rg, bg = planes
    rgb = np.stack([rg + g, g, bg + g], axis=-1)
    if rgb.min() < 0 or rgb.max() > 255:
        raise ValueError("corrupt stream: decoded pixels are out of range")
    return rgb.astype(np.uint8)


def _residual(planes: np.ndarray) -> np.ndarray:
    """Second difference along H and W (zero padding): inverse of two cumulative sums."""
    d = np.diff(planes, axis=1, prepend=0)
    return np.diff(d, axis=2, prepend=0)


def _tables(freqs: np.ndarray) -> CdfTables:
    cdfs = np.zeros((3, _BINS + 1), dtype=np.int32)
    np.cumsum(freqs, axis=1, out=cdfs[:, 1:])
    offsets = np.full(3, -_HALF, dtype=np.int32)
    return CdfTables(cdfs, np.full(3, _BINS + 1, dtype=np.int32), offsets, 16)


def encode(image: np.ndarray) -> bytes:
    """Codes a uint8 ``[H, W, 3]`` RGB image losslessly."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape[2:] != (3,):
        raise ValueError("image must be a uint8 array of shape [H, W, 3]")
    h, w, _ = image.shape
    if h == 0 or w == 0:
        raise ValueError(f"image is empty ({h}x{w})")
    res = _residual(_planes(image))
    freqs = np.empty((3, _BINS), dtype=np.int64)
    for p in range(3):
        v = res[p].ravel() + _HALF
        inside = (v >= 0) & (v < _BINS - 1)
        hist = np.bincount(v[inside], minlength=_BINS - 1).astype(np.float64)
        pmf = np.append(hist, (~inside).sum()) + 0.5  # +0.5: no bin may be empty
        freqs[p] = np.diff(pmf_to_quantized_cdf(pmf, 16))
    indexes = np.broadcast_to(np.arange(3, dtype=np.int32)[:, None, None], res.shape)
    stream = _tables(freqs).encode(res, indexes)
    return _HEADER.pack(MAGIC, h, w) + (freqs - 1).astype("<u2").tobytes() + stream


def decode(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode`; raises ``ValueError`` on anything that is not such a stream."""
    if len(data) < _HEADER.size + 3 * _BINS * 2:
        raise ValueError(f"not a fastcodec lossless stream: {len(data)} bytes is too short")
    magic, h, w = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a fastcodec lossless stream (magic {magic!r}, expected {MAGIC!r})")
    if h == 0 or w == 0 or h * w > _MAX_PIXELS:
        raise ValueError(f"implausible image size {h}x{w} in header")
    table_end = _HEADER.size + 3 * _BINS * 2
    freqs = np.frombuffer(data, "<u2", 3 * _BINS, _HEADER.size).astype(np.int64) + 1
    freqs = freqs.reshape(3, _BINS)
    if np.any(freqs.sum(axis=1) != 1 << 16):
        raise ValueError("corrupt header: a frequency table does not sum to 2**16")
    indexes = np.broadcast_to(np.arange(3, dtype=np.int32)[:, None, None], (3, h, w))
    res = _tables(freqs).decode(data[table_end:], indexes).astype(np.int64)
    return _image(np.cumsum(np.cumsum(res, axis=1), axis=2))
