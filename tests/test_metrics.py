"""fastcodec.metrics: PSNR, SSIM/MS-SSIM against a direct windowed reference, BD-rate against
hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from fastcodec import metrics
from fastcodec.metrics import bd_coverage, bd_rate, bd_rate_details, ms_ssim, psnr, ssim

# --------------------------------------------------------------------------------------------
# test images


def _textured(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """A smooth image with edges and texture (not white noise), uint8 [h, w, c]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + 40 * (xx + 2 * yy > (w + h) / 1.5)
    chans = [base + 25 * np.sin((xx + 3 * k) / (3.0 + k)) + rng.normal(0, 6, (h, w))
             for k in range(c)]
    return np.clip(np.stack(chans, axis=2), 0, 255).astype(np.uint8)


def _noisy(img: np.ndarray, sigma: float, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(img + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# a direct reference: 2-D window over every valid position, moments about the local mean


def _ref_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean SSIM map, mean contrast-structure map) of one channel, float64 [h, w]."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g)
    win /= win.sum()
    px = sliding_window_view(x, (11, 11))  # [h-10, w-10, 11, 11]
    py = sliding_window_view(y, (11, 11))
    mx = np.einsum("ijkl,kl->ij", px, win)
    my = np.einsum("ijkl,kl->ij", py, win)
    dx = px - mx[..., None, None]
    dy = py - my[..., None, None]
    vx = np.einsum("ijkl,kl->ij", dx * dx, win)
    vy = np.einsum("ijkl,kl->ij", dy * dy, win)
    cxy = np.einsum("ijkl,kl->ij", dx * dy, win)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def _ref_down(x: np.ndarray) -> np.ndarray:
    """2x2 block mean, replicating an odd last row/column first."""
    x = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), mode="edge")
    return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))


def _ref_ms_ssim(a: np.ndarray, b: np.ndarray, scales: int) -> float:
    a = a.astype(np.float64).reshape(a.shape[0], a.shape[1], -1)
    b = b.astype(np.float64).reshape(b.shape[0], b.shape[1], -1)
    w = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales])
    if scales < 5:  # fewer scales: the first weights renormalized; all 5: as published
        w = w / w.sum()
    per_channel = []
    for ch in range(a.shape[2]):
        x, y, value = a[:, :, ch], b[:, :, ch], 1.0
        for i in range(scales):
            s, cs = _ref_terms(x, y)
            value *= max(s if i == scales - 1 else cs, 0.0) ** w[i]
            x, y = _ref_down(x), _ref_down(y)
        per_channel.append(value)
    return float(np.mean(per_channel))


# --------------------------------------------------------------------------------------------
# PSNR


def test_psnr_hand_computed():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 255  # MSE = 255^2 / 60
    assert psnr(a, b) == pytest.approx(10 * math.log10(60), abs=1e-12)
    b[:] = 10  # MSE = 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-12)
    assert psnr(a, a) == math.inf


def test_psnr_is_over_all_channels_and_layouts_agree():
    a, b = _textured(20, 30, 3, 1), _textured(20, 30, 3, 2)
    mse = np.mean([np.mean((a[..., c].astype(float) - b[..., c]) ** 2) for c in range(3)])
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    assert psnr(a[..., 0], b[..., 0]) == pytest.approx(psnr(a[..., :1], b[..., :1]), rel=1e-15)


def test_metric_input_errors():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), a)
    with pytest.raises(TypeError, match="numpy array"):
        ms_ssim(a.tolist(), a)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[:, :15])
    with pytest.raises(ValueError, match="HxW"):
        psnr(np.zeros((2, 2, 2, 2), np.uint8), np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(a[:10], a[:10])
    with pytest.raises(ValueError, match="at least 11"):
        ssim(a[:, :9], a[:, :9])


# --------------------------------------------------------------------------------------------
# SSIM / MS-SSIM


def test_ssim_matches_direct_reference():
    a = _textured(23, 31, 3, 3)
    b = _noisy(a, 12)
    ref = np.mean([_ref_terms(a[..., c].astype(float), b[..., c].astype(float))[0]
                   for c in range(3)])
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)


def test_ms_ssim_five_scales_matches_reference():
    a = _textured(176, 168, 1, 4)[..., 0]  # short side >= 161: the standard 5 scales
    b = _noisy(a, 15)
    assert metrics.ms_ssim_scales(*a.shape) == 5
    assert ms_ssim(a, b) == pytest.approx(_ref_ms_ssim(a, b, 5), abs=1e-12)


@pytest.mark.parametrize("shape, scales", [((64, 96, 3), 3), ((45, 43, 3), 3), ((30, 50, 2), 2)])
def test_ms_ssim_fewer_scales_matches_reference(shape, scales):
    a = _textured(*shape, seed=5)
    b = _noisy(a, 9)
    assert metrics.ms_ssim_scales(*shape[:2]) == scales
    assert ms_ssim(a, b) == pytest.approx(_ref_ms_ssim(a, b, scales), abs=1e-12)


def test_ms_ssim_scale_count():
    assert metrics.ms_ssim_scales(161, 1000) == 5
    assert metrics.ms_ssim_scales(160, 160) == 4
    assert metrics.ms_ssim_scales(512, 768) == 5
    assert metrics.ms_ssim_scales(11, 11) == 1
    assert metrics.ms_ssim_scales(21, 40) == 2
    assert metrics.ms_ssim_scales(10, 500) == 0


def test_ms_ssim_properties():
    a = _textured(64, 80, 3, 6)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    b = _noisy(a, 8)
    assert ms_ssim(a, b) == pytest.approx(ms_ssim(b, a), abs=1e-14)
    values = [ms_ssim(a, _noisy(a, s)) for s in (2, 5, 10, 20, 40)]
    assert all(0 < v < 1 for v in values)
    assert values == sorted(values, reverse=True)
    # colour = mean of the channels scored alone; grey HxW = HxWx1
    assert ms_ssim(a, b) == pytest.approx(np.mean([ms_ssim(a[..., c], b[..., c])
                                                   for c in range(3)]), abs=1e-14)
    assert ms_ssim(a[..., 1], b[..., 1]) == pytest.approx(ms_ssim(a[..., 1:2], b[..., 1:2]),
                                                          abs=1e-15)


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert metrics.ms_ssim_db(1.0) == math.inf
    with pytest.raises(ValueError):
        metrics.ms_ssim_db(1.5)


# --------------------------------------------------------------------------------------------
# BD-rate

# A JPEG-like curve (Kodak means): not a polynomial in PSNR.
RATE = np.array([0.27, 0.42, 0.62, 0.80, 1.19, 1.75, 2.97, 4.15])
PSNR = np.array([22.4, 25.1, 27.4, 28.8, 30.5, 32.7, 37.1, 39.9])


def test_bd_rate_identical_curves_is_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-10)
    assert bd_rate(RATE, PSNR, RATE, PSNR, psnr_range=(26, 38)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("psnr_range", [None, (26.0, 38.0), (20.0, 45.0)])
def test_bd_rate_constant_rate_scale(psnr_range):
    # log(0.8 r) = log(r) + log(0.8) exactly, so the fits differ by that constant everywhere
    assert bd_rate(RATE, PSNR, 0.8 * RATE, PSNR, psnr_range=psnr_range) == \
        pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(0.8 * RATE, PSNR, RATE, PSNR, psnr_range=psnr_range) == \
        pytest.approx(25.0, abs=1e-9)


def test_bd_rate_psnr_shift():
    # log r = a + beta * P exactly (the rate doubles every 6 dB); curve b reaches the same
    # rates 1 dB higher, so log r_b(P) = log r_a(P) - beta: BD = 2^(-1/6) - 1 = -10.91 %
    beta = math.log(2) / 6
    pa = np.array([26.0, 29.0, 31.0, 34.0, 36.5, 40.0])
    ra = np.exp(-3 + beta * pa)
    pb = pa + 1.0
    details = bd_rate_details(ra, pa, ra, pb)
    assert details.percent == pytest.approx((2 ** (-1 / 6) - 1) * 100, abs=1e-9)
    assert details.percent == pytest.approx(-10.910, abs=1e-3)
    assert details.interval == (27.0, 40.0)  # overlap of [26, 40] and [27, 41]
    assert not details.extrapolated


def test_bd_rate_varying_difference_hand_computed():
    # log r_a is an exact cubic; log r_b = log r_a + c (P - 30): over [L, H] the mean
    # difference is c ((L + H) / 2 - 30)
    p = np.array([24.0, 27.0, 30.0, 33.0, 36.0, 39.0, 42.0])
    log_ra = 0.002 * (p - 30) ** 3 - 0.01 * (p - 30) ** 2 + 0.15 * (p - 30)
    c = -0.02
    log_rb = log_ra + c * (p - 30)
    got = bd_rate(np.exp(log_ra), p, np.exp(log_rb), p, psnr_range=(28.0, 40.0))
    assert got == pytest.approx(math.expm1(c * (34.0 - 30.0)) * 100, abs=1e-9)  # -7.69 %
    got = bd_rate(np.exp(log_ra), p, np.exp(log_rb), p)  # overlap [24, 42], midpoint 33
    assert got == pytest.approx(math.expm1(c * 3.0) * 100, abs=1e-9)


def test_bd_rate_matches_classic_polyfit_formula_and_ignores_order():
    rate_b = RATE * np.exp(-0.3 + 0.01 * (PSNR - 30) ** 2 / 10)
    psnr_b = PSNR + 0.4
    # the textbook version: np.polyfit in raw PSNR, np.polyint, evaluate at the overlap ends
    lo, hi = max(PSNR.min(), psnr_b.min()), min(PSNR.max(), psnr_b.max())
    ints = []
    for r, q in ((RATE, PSNR), (rate_b, psnr_b)):
        anti = np.polyint(np.polyfit(q, np.log(r), 3))
        ints.append((np.polyval(anti, hi) - np.polyval(anti, lo)) / (hi - lo))
    expected = (math.exp(ints[1] - ints[0]) - 1) * 100
    assert bd_rate(RATE, PSNR, rate_b, psnr_b) == pytest.approx(expected, abs=1e-6)
    perm = np.random.default_rng(0).permutation(len(RATE))
    assert bd_rate(RATE[perm], PSNR[perm], rate_b, psnr_b) == pytest.approx(expected, abs=1e-6)


def test_bd_coverage_and_extrapolation_flag():
    pa = np.array([28.0, 31.0, 34.0, 37.0, 40.0])
    pb = np.array([24.0, 27.0, 30.0, 33.0, 36.0])
    ra, rb = np.exp(pa / 8), np.exp(pb / 8)
    cov = bd_coverage(pa, pb, psnr_range=(26.0, 38.0))
    assert cov["coverage_a"] == pytest.approx(10 / 12)  # [28, 38] of [26, 38]
    assert cov["coverage_b"] == pytest.approx(10 / 12)  # [26, 36]
    assert cov["extrapolated"] is True
    details = bd_rate_details(ra, pa, rb, pb, psnr_range=(26.0, 38.0))
    assert details.extrapolated and details.coverage_a == pytest.approx(10 / 12)
    # both are log r = P / 8: same curve, extrapolated exactly
    assert details.percent == pytest.approx(0.0, abs=1e-9)
    overlap = bd_coverage(pa, pb)
    assert overlap["interval_db"] == [28.0, 36.0] and overlap["extrapolated"] is False
    assert details.as_dict()["extrapolated"] is True


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATE[:3], PSNR[:3], RATE, PSNR)
    with pytest.raises(ValueError, match="distinct"):
        bd_rate([1, 2, 3, 4], [30, 30, 31, 32], RATE, PSNR)
    with pytest.raises(ValueError, match="rates <= 0"):
        bd_rate(np.r_[0.0, RATE[1:]], PSNR, RATE, PSNR)
    with pytest.raises(ValueError, match="non-finite"):
        bd_rate(RATE, np.r_[np.inf, PSNR[1:]], RATE, PSNR)
    with pytest.raises(ValueError, match="PSNR values"):
        bd_rate(RATE, PSNR[:-1], RATE, PSNR)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATE, PSNR, RATE, PSNR + 30)
    with pytest.raises(ValueError, match="low < high"):
        bd_rate(RATE, PSNR, RATE, PSNR, psnr_range=(38, 26))
    # non-overlapping curves are still comparable over an explicit (extrapolated) range
    assert math.isfinite(bd_rate(RATE, PSNR, RATE, PSNR + 30, psnr_range=(30, 50)))


def test_bd_rate_wild_extrapolation_is_inf_not_an_error():
    p = np.array([28.0, 31.0, 34.0, 37.0, 40.0])
    ra = np.exp(p / 8)
    rb = np.exp(p / 8 + 0.01 * (p - 30) ** 3)
    details = bd_rate_details(ra, p, rb, p, psnr_range=(150.0, 200.0))
    assert details.percent == math.inf and details.extrapolated
    assert details.coverage_a == 0.0 and details.coverage_b == 0.0
