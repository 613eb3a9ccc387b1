"""Image quality and rate-distortion metrics: PSNR, (MS-)SSIM and the Bjøntegaard delta rate.

* :func:`psnr` -- peak 255, MSE over all pixels and channels (one number per image pair).
* :func:`ssim` / :func:`ms_ssim` -- Wang et al.'s SSIM (2004) and multi-scale SSIM (2003) in
  float64 numpy: Gaussian window 11 / sigma 1.5 applied without padding ("valid"),
  K1 = 0.01, K2 = 0.03, data range 255, 5 scales with the standard weights. Colour images are
  scored per channel and the channel values averaged (the convention of the learned-compression
  literature, e.g. ``pytorch_msssim``).
* :func:`bd_rate` / :func:`bd_rate_details` -- Bjøntegaard's average rate difference between two
  rate-distortion curves, with :func:`bd_coverage` telling whether the curves were measured over
  the whole integration interval or had to be extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: Standard MS-SSIM scale weights (Wang, Simoncelli, Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
#: Points per curve :func:`bd_rate` needs (a cubic fit has 4 coefficients).
MIN_BD_POINTS = 4


# --------------------------------------------------------------------------------------------
# input checks


def _pair(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Checks two uint8 images (HxW or HxWxC) of equal shape; returns them as float64 HxWxC."""
    arrays = []
    for label, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: {label} must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.uint8:
            raise TypeError(f"{name}: {label} must be uint8 (0..255), got dtype {x.dtype}")
        if x.ndim not in (2, 3) or x.size == 0:
            raise ValueError(f"{name}: {label} must be a non-empty HxW or HxWxC array, "
                             f"got shape {x.shape}")
        arrays.append(x)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"{name}: shapes differ: {arrays[0].shape} vs {arrays[1].shape}")
    out = tuple(x.astype(np.float64) for x in arrays)
    if out[0].ndim == 2:
        out = tuple(x[:, :, None] for x in out)
    return out


# --------------------------------------------------------------------------------------------
# PSNR


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of the same shape (HxW or HxWxC), peak 255, MSE over all
    pixels and channels; ``inf`` when they are identical."""
    x, y = _pair(a, b, "psnr")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


# --------------------------------------------------------------------------------------------
# SSIM / MS-SSIM


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """1-D Gaussian taps, float64 [size], summing to 1 (the 2-D window is their outer product)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of ``x`` [H, W, C] along H then W: [H-k+1, W-k+1, C]."""
    k = taps.shape[0]
    h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
    rows = np.multiply(x[0:h], taps[0])
    tmp = np.empty_like(rows)
    for i in range(1, k):
        rows += np.multiply(x[i:i + h], taps[i], out=tmp)
    out = np.multiply(rows[:, 0:w], taps[0])
    tmp = np.empty_like(out)
    for i in range(1, k):
        out += np.multiply(rows[:, i:i + w], taps[i], out=tmp)
    return out


def _ssim_terms(x: np.ndarray, y: np.ndarray, taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and of the contrast-structure map, float64 [C] each."""
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    c = x.shape[2]
    # one filtering pass over the five stacked moments: [H, W, 5C]
    moments = _filter_valid(np.concatenate([x, y, x * x, y * y, x * y], axis=2), taps)
    mu_x, mu_y = moments[..., 0:c], moments[..., c:2 * c]
    var_x = moments[..., 2 * c:3 * c] - mu_x * mu_x
    var_y = moments[..., 3 * c:4 * c] - mu_y * mu_y
    cov = moments[..., 4 * c:5 * c] - mu_x * mu_y
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return (luminance * cs_map).mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))


def _halve(x: np.ndarray) -> np.ndarray:
    """2x2 average downsampling of [H, W, C]; an odd last row/column is averaged with a copy
    of itself (replicate padding), so the result is [ceil(H/2), ceil(W/2), C]."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim_scales(height: int, width: int, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many MS-SSIM scales an image of this size gets: the most scales (up to
    ``max_scales``) whose coarsest level (each level ``ceil(side / 2)``) still holds the 11-px
    window. 5 for a short side >= 161 px; 0 below 11 px."""
    side, n = min(height, width), 0
    while n < max_scales and side >= WINDOW_SIZE:
        n += 1
        side = (side + 1) // 2
    return n


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Single-scale SSIM of two uint8 images (HxW or HxWxC, same shape, each side >= 11 px):
    mean of the SSIM map (valid 11x11 Gaussian window, sigma 1.5), averaged over channels.
    1.0 for identical images."""
    x, y = _pair(a, b, "ssim")
    if min(x.shape[:2]) < WINDOW_SIZE:
        raise ValueError(f"ssim: images must be at least {WINDOW_SIZE} px on each side, "
                         f"got {x.shape[0]}x{x.shape[1]}")
    s, _ = _ssim_terms(x, y, gaussian_window())
    return float(s.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM of two uint8 images (HxW or HxWxC, same shape), in [0, 1].

    Per channel: ``prod_{i<n-1} cs_i^w_i * ssim_{n-1}^w_{n-1}`` over ``n`` scales (2x2 average
    downsampling between scales, negative terms clamped to 0), then the mean over channels.
    Images >= 161 px on the short side get the 5 standard scales and weights; smaller ones get
    fewer scales (:func:`ms_ssim_scales`: as many as keep the 11-px window inside the coarsest
    level) with the first ``n`` standard weights renormalized to sum to 1, so values of such
    small images are comparable with each other but not exactly with 5-scale values. Below
    11 px on the short side: ValueError.
    """
    x, y = _pair(a, b, "ms_ssim")
    n = ms_ssim_scales(x.shape[0], x.shape[1])
    if n == 0:
        raise ValueError(f"ms_ssim: images must be at least {WINDOW_SIZE} px on the short side, "
                         f"got {x.shape[0]}x{x.shape[1]}")
    weights = np.asarray(MS_SSIM_WEIGHTS[:n], dtype=np.float64)
    if n < len(MS_SSIM_WEIGHTS):  # the standard 5 weights are used as published (sum 1.0001)
        weights /= weights.sum()
    taps = gaussian_window()
    result = np.ones(x.shape[2], dtype=np.float64)
    for i in range(n):
        s, cs = _ssim_terms(x, y, taps)
        term = s if i == n - 1 else cs
        result *= np.maximum(term, 0.0) ** weights[i]
        if i < n - 1:
            x, y = _halve(x), _halve(y)
    return float(result.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - value)`` (``inf`` for 1.0)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ms_ssim_db: value must be in [0, 1], got {value}")
    return math.inf if value == 1.0 else -10.0 * math.log10(1.0 - value)


# --------------------------------------------------------------------------------------------
# Bjøntegaard delta rate


@dataclass(frozen=True)
class BDRate:
    """A Bjøntegaard delta-rate result.

    ``percent``: average rate of curve b relative to curve a at equal PSNR, in percent
    (negative: b needs less rate). ``interval``: the PSNR interval (dB) integrated over.
    ``span_a`` / ``span_b``: each curve's measured PSNR span. ``coverage_a`` / ``coverage_b``:
    fraction of the interval inside that span (1.0 = no extrapolation). ``extrapolated``: True
    when either coverage is below 1, i.e. part of the number comes from the cubic fits
    outside the measured points and should be read with care.
    """

    percent: float
    interval: tuple[float, float]
    span_a: tuple[float, float]
    span_b: tuple[float, float]
    coverage_a: float
    coverage_b: float

    @property
    def extrapolated(self) -> bool:
        return self.coverage_a < 1.0 or self.coverage_b < 1.0

    def as_dict(self) -> dict:
        return {
            "percent": self.percent,
            "interval_db": list(self.interval),
            "span_a_db": list(self.span_a),
            "span_b_db": list(self.span_b),
            "coverage_a": self.coverage_a,
            "coverage_b": self.coverage_b,
            "extrapolated": self.extrapolated,
        }


def _curve(rate, quality, label: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    if r.shape != q.shape:
        raise ValueError(f"bd_rate: curve {label} has {r.size} rates but {q.size} PSNR values")
    if r.size < MIN_BD_POINTS:
        raise ValueError(f"bd_rate: curve {label} has {r.size} points; a cubic fit needs at "
                         f"least {MIN_BD_POINTS}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"bd_rate: curve {label} has non-finite rates or PSNR values")
    if np.any(r <= 0):
        raise ValueError(f"bd_rate: curve {label} has rates <= 0 (the fit uses log(rate))")
    if np.unique(q).size < MIN_BD_POINTS:
        raise ValueError(f"bd_rate: curve {label} needs at least {MIN_BD_POINTS} distinct "
                         "PSNR values")
    return r, q


def _coverage(span: tuple[float, float], interval: tuple[float, float]) -> float:
    lo, hi = interval
    inside = max(0.0, min(hi, span[1]) - max(lo, span[0]))
    return inside / (hi - lo)


def _interval(span_a, span_b, psnr_range) -> tuple[float, float]:
    if psnr_range is None:
        lo, hi = max(span_a[0], span_b[0]), min(span_a[1], span_b[1])
        if not hi > lo:
            raise ValueError(f"bd_rate: the PSNR spans do not overlap ({span_a[0]:.3f}.."
                             f"{span_a[1]:.3f} dB vs {span_b[0]:.3f}..{span_b[1]:.3f} dB); "
                             "give psnr_range to extrapolate")
        return lo, hi
    lo, hi = (float(v) for v in psnr_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"bd_rate: psnr_range must be (low, high) with low < high, got "
                         f"{psnr_range!r}")
    return lo, hi


def bd_coverage(psnr_a: Sequence[float], psnr_b: Sequence[float], *,
                psnr_range: Optional[tuple[float, float]] = None) -> dict:
    """How well two curves cover the BD integration interval (the overlap of their PSNR spans,
    or ``psnr_range``): ``{"interval_db", "span_a_db", "span_b_db", "coverage_a",
    "coverage_b", "extrapolated"}`` (coverages are fractions of the interval, 1.0 = measured
    everywhere). Raises ValueError when the spans do not overlap and no range is given."""
    qa = np.asarray(psnr_a, dtype=np.float64).reshape(-1)
    qb = np.asarray(psnr_b, dtype=np.float64).reshape(-1)
    if qa.size == 0 or qb.size == 0:
        raise ValueError("bd_coverage: both curves need at least one PSNR value")
    span_a, span_b = (float(qa.min()), float(qa.max())), (float(qb.min()), float(qb.max()))
    interval = _interval(span_a, span_b, psnr_range)
    ca, cb = _coverage(span_a, interval), _coverage(span_b, interval)
    return {"interval_db": list(interval), "span_a_db": list(span_a), "span_b_db": list(span_b),
            "coverage_a": ca, "coverage_b": cb, "extrapolated": ca < 1.0 or cb < 1.0}


def bd_rate_details(rate_a: Sequence[float], psnr_a: Sequence[float], rate_b: Sequence[float],
                    psnr_b: Sequence[float], *,
                    psnr_range: Optional[tuple[float, float]] = None) -> BDRate:
    """Bjøntegaard delta rate of curve b against curve a, with its interval and coverage.

    Each curve (``rate`` > 0 in any unit shared by both, e.g. bpp; ``psnr`` in dB; >= 4 points
    with >= 4 distinct PSNR values; any order) is fitted as ``log(rate) = cubic(PSNR)`` by least
    squares. Both fits are integrated over the overlap of the two measured PSNR spans, or over
    ``psnr_range = (low, high)`` when given; the result is ``(exp(mean(log r_b - log r_a)) - 1)
    * 100``. Over a ``psnr_range`` outside a curve's span the fits are *extrapolated*: the number
    is still returned, with ``coverage_*`` < 1 and ``extrapolated`` True (see
    :func:`bd_coverage`); a wild extrapolation can give ``inf``.
    """
    ra, qa = _curve(rate_a, psnr_a, "a")
    rb, qb = _curve(rate_b, psnr_b, "b")
    span_a, span_b = (float(qa.min()), float(qa.max())), (float(qb.min()), float(qb.max()))
    lo, hi = _interval(span_a, span_b, psnr_range)
    mean_log = []
    for r, q in ((ra, qa), (rb, qb)):
        # Polynomial.fit maps the PSNR values onto [-1, 1] before fitting (well conditioned);
        # integ() of the fitted series accounts for that mapping.
        antiderivative = np.polynomial.Polynomial.fit(q, np.log(r), 3).integ()
        mean_log.append((antiderivative(hi) - antiderivative(lo)) / (hi - lo))
    diff = float(mean_log[1] - mean_log[0])
    # far-off extrapolation can put the difference beyond float range: +inf percent
    percent = math.inf if diff > 700.0 else math.expm1(diff) * 100.0
    return BDRate(percent=percent, interval=(lo, hi), span_a=span_a, span_b=span_b,
                  coverage_a=_coverage(span_a, (lo, hi)), coverage_b=_coverage(span_b, (lo, hi)))


def bd_rate(rate_a: Sequence[float], psnr_a: Sequence[float], rate_b: Sequence[float],
            psnr_b: Sequence[float], *, psnr_range: Optional[tuple[float, float]] = None) -> float:
    """Bjøntegaard delta rate of curve b against curve a in percent (negative: b saves rate);
    see :func:`bd_rate_details` for the method, and :func:`bd_coverage` to learn whether the
    interval needed extrapolation."""
    return bd_rate_details(rate_a, psnr_a, rate_b, psnr_b, psnr_range=psnr_range).percent
