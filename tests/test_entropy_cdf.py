"""Quantized CDFs: pmf_to_quantized_cdf, laplace_cdf_tables and pack_cdfs."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastcodec import rangecoder as rc
from fastcodec.entropy import laplace_cdf_tables, pack_cdfs, pmf_to_quantized_cdf


def expected_bits(pmf, freqs, precision) -> float:
    """Expected code length (bits/symbol) of ``pmf`` coded with ``freqs``."""
    q = np.asarray(pmf, np.float64)
    q = q / q.sum()
    f = np.asarray(freqs, np.float64)
    nz = q > 0
    return float(np.sum(q[nz] * (precision - np.log2(f[nz]))))


def entropy_bits(pmf) -> float:
    q = np.asarray(pmf, np.float64)
    q = q[q > 0] / q.sum()
    return float(-np.sum(q * np.log2(q)))


def optimal_freqs(pmf, precision) -> np.ndarray:
    """The exact optimum of ``max sum q log f`` with integer ``f >= 1`` summing to
    ``2**precision``: hand out units one at a time from all ones, largest marginal gain first
    (exact because the gains of each bin decrease)."""
    q = np.asarray(pmf, np.float64)
    q = q / q.sum()
    f = np.ones(q.size, np.int64)
    heap = [(-qi * math.log1p(1.0), i) for i, qi in enumerate(q)]
    heapq.heapify(heap)
    for _ in range((1 << precision) - q.size):
        _, i = heapq.heappop(heap)
        f[i] += 1
        heapq.heappush(heap, (-q[i] * math.log1p(1.0 / f[i]), i))
    return f


def assert_valid_cdf(cdf, n, precision):
    assert isinstance(cdf, np.ndarray) and cdf.dtype == np.int32
    assert cdf.shape == (n + 1,)
    assert cdf[0] == 0 and cdf[-1] == 1 << precision
    assert np.all(np.diff(cdf.astype(np.int64)) >= 1)  # strictly increasing: every bin >= 1


# ---------------------------------------------------------------------------------------------
# pmf_to_quantized_cdf
# ---------------------------------------------------------------------------------------------


@st.composite
def pmfs(draw):
    precision = draw(st.integers(1, 16))
    n = draw(st.integers(1, min(1 << precision, 300)))
    values = draw(hnp.arrays(np.float64, n, elements=st.one_of(
        # no subnormals: rescaled by 1e-3 they could underflow to 0 (a different pmf)
        st.floats(1e-300, 1), st.just(0.0), st.floats(1e-12, 1e-6), st.floats(1, 1e6))))
    if values.sum() <= 0:
        values[draw(st.integers(0, n - 1))] = 1.0
    return values, precision


@settings(derandomize=True, database=None, deadline=None, max_examples=150)
@given(pmfs())
def test_quantized_cdf_is_valid(problem):
    pmf, precision = problem
    cdf = pmf_to_quantized_cdf(pmf, precision)
    assert_valid_cdf(cdf, pmf.size, precision)
    freqs = np.diff(cdf.astype(np.int64))
    assert freqs.sum() == 1 << precision
    # Zero-probability bins keep the minimum, and bigger probabilities never get fewer units
    # than a bin with less than half their probability.
    assert np.all(freqs[pmf == 0] == 1)
    order = np.argsort(pmf, kind="stable")
    q = pmf[order]
    f = freqs[order]
    for a, b in zip(range(len(q) - 1), range(1, len(q))):
        if q[b] > 2 * q[a]:
            assert f[b] >= f[a]
    # The table is usable by the coder.
    rc.CdfTables(cdf[None], [cdf.size], [0], precision)


@settings(derandomize=True, database=None, deadline=None, max_examples=60)
@given(pmfs(), st.floats(1e-3, 1e3))
def test_quantized_cdf_ignores_the_total(problem, factor):
    """Any positive total: only the proportions matter (up to float rounding of huge/tiny
    rescalings, so compare expected lengths rather than exact bytes)."""
    pmf, precision = problem
    a = np.diff(pmf_to_quantized_cdf(pmf, precision).astype(np.int64))
    b = np.diff(pmf_to_quantized_cdf(pmf * factor, precision).astype(np.int64))
    assert expected_bits(pmf, a, precision) == pytest.approx(
        expected_bits(pmf, b, precision), abs=1e-9)


def test_quantized_cdf_simple_cases():
    np.testing.assert_array_equal(pmf_to_quantized_cdf([1.0], 16), [0, 65536])
    np.testing.assert_array_equal(pmf_to_quantized_cdf([0.5, 0.5], 1), [0, 1, 2])
    np.testing.assert_array_equal(pmf_to_quantized_cdf([1, 1, 1, 1], 4), [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(pmf_to_quantized_cdf([3, 1], 2), [0, 3, 4])
    np.testing.assert_array_equal(pmf_to_quantized_cdf([0.25, 0.75], 16), [0, 16384, 65536])
    # As many bins as units: every bin gets exactly one.
    np.testing.assert_array_equal(pmf_to_quantized_cdf(np.arange(1.0, 17.0), 4), np.arange(17))
    # A dominant bin and tiny ones: each tiny one keeps 1, the big one the rest.
    np.testing.assert_array_equal(pmf_to_quantized_cdf([1e-12, 1.0, 1e-12], 16),
                                  [0, 1, 65535, 65536])
    # Lists, tuples, integer and float32 inputs.
    for pmf in ([1, 2, 5], (1, 2, 5), np.array([1, 2, 5]), np.array([1, 2, 5], np.float32)):
        assert_valid_cdf(pmf_to_quantized_cdf(pmf, 8), 3, 8)


@pytest.mark.parametrize("pmf", [
    np.exp(-0.5 * (np.arange(-60, 61) / 20.0) ** 2),  # smooth bell over 121 bins
    np.random.default_rng(0).dirichlet(np.ones(256)),  # 256 bins, none tiny
    np.append(np.exp(-np.abs(np.arange(-40, 41)) / 12.0), 1e-3),  # Laplace + escape bin
])
def test_quantized_cdf_is_near_entropy_at_precision_16(pmf):
    """For a smooth pmf the expected code length is within 1e-3 bits of the entropy."""
    cdf = pmf_to_quantized_cdf(pmf, 16)
    assert_valid_cdf(cdf, pmf.size, 16)
    excess = expected_bits(pmf, np.diff(cdf.astype(np.int64)), 16) - entropy_bits(pmf)
    assert 0 <= excess <= 1e-3


@pytest.mark.parametrize("precision,trials", [(8, 30), (12, 10), (16, 3)])
def test_quantized_cdf_is_near_the_integer_optimum(precision, trials):
    """Against the exact integer optimum (which no quantization can beat): within 1e-3 bits
    from precision 12 on, and a few hundredths at 8 bits; never better than the optimum."""
    rng = np.random.default_rng(precision)
    tolerance = {8: 0.02, 12: 1e-3, 16: 1e-4}[precision]
    for trial in range(trials):
        n = int(rng.integers(2, 60))
        pmf = rng.dirichlet(np.ones(n) * rng.choice([0.1, 1.0, 10.0]))
        if trial % 3 == 0:
            pmf[: n // 3] *= 1e-7  # bins far below one unit
        got = expected_bits(pmf, np.diff(pmf_to_quantized_cdf(pmf, precision).astype(int)),
                            precision)
        best = expected_bits(pmf, optimal_freqs(pmf, precision), precision)
        assert best - 1e-12 <= got <= best + tolerance


def test_quantized_cdf_is_the_exact_optimum_as_documented():
    pmf = np.array([0.05, 0.0, 0.95])
    got = np.diff(pmf_to_quantized_cdf(pmf, 5).astype(np.int64))
    best = optimal_freqs(pmf, 5)
    assert expected_bits(pmf, got, 5) <= expected_bits(pmf, best, 5) + 1e-12


@pytest.mark.parametrize("pmf,precision,match", [
    ([], 16, r"pmf must be a non-empty 1-D array, got shape \(0,\)"),
    ([[0.5, 0.5]], 16, r"pmf must be a non-empty 1-D array, got shape \(1, 2\)"),
    (0.5, 16, r"pmf must be a non-empty 1-D array, got shape \(\)"),
    ([0.5, -0.1, 0.6], 16, "pmf must be finite, non-negative and have a positive sum"),
    ([0.5, np.nan], 16, "finite, non-negative"),
    ([0.5, np.inf], 16, "finite, non-negative"),
    ([0.0, 0.0, 0.0], 16, "positive sum"),
    ([0.25] * 5, 2, r"5 bins do not fit in 2\*\*2 = 4 units"),
    (np.ones(65537), 16, r"65537 bins do not fit in 2\*\*16 = 65536 units"),
    ([0.5, 0.5], 0, r"precision must be in \[1, 16\], got 0"),
    ([0.5, 0.5], 17, r"precision must be in \[1, 16\], got 17"),
])
def test_quantized_cdf_errors(pmf, precision, match):
    with pytest.raises(ValueError, match=match):
        pmf_to_quantized_cdf(pmf, precision)


# ---------------------------------------------------------------------------------------------
# laplace_cdf_tables
# ---------------------------------------------------------------------------------------------


def test_laplace_tables_shapes_offsets_and_support():
    scales = np.array([0.05, 0.1, 0.5, 1.0, 3.0, 6.0, 6.2, 20.0, 1e4])
    cdfs, lengths, offsets = laplace_cdf_tables(scales)
    assert cdfs.dtype == lengths.dtype == offsets.dtype == np.int32
    assert cdfs.shape == (scales.size, int(lengths.max()))
    assert lengths.shape == offsets.shape == (scales.size,)
    half = np.minimum(np.ceil(scales * math.log(1e9)), 127).astype(np.int64)
    np.testing.assert_array_equal(offsets, -half)
    np.testing.assert_array_equal(lengths, 2 * half + 3)  # symbols + escape bin + 1
    assert lengths.max() == 255 + 2  # at most 255 symbols
    assert np.all(np.diff(lengths) >= 0)  # support grows with the scale
    for t in range(scales.size):
        row = cdfs[t, : lengths[t]].astype(np.int64)
        assert row[0] == 0 and row[-1] == 1 << 16 and np.all(np.diff(row) >= 1)
        assert np.all(cdfs[t, lengths[t]:] == 1 << 16)  # pack_cdfs padding
    rc.CdfTables(cdfs, lengths, offsets, 16)


def test_laplace_tables_follow_the_distribution():
    """Frequencies follow the discretized Laplace: peak at 0, symmetric to a unit, and the
    expected code length under the true pmf is close to its entropy."""
    for scale in (0.3, 1.0, 4.0, 15.0):
        cdfs, lengths, offsets = laplace_cdf_tables([scale])
        freqs = np.diff(cdfs[0, : lengths[0]].astype(np.int64))
        regular, escape = freqs[:-1], freqs[-1]
        half = -int(offsets[0])
        assert regular.size == 2 * half + 1
        assert int(np.argmax(regular)) == half  # the mode is symbol 0
        assert np.all(np.abs(regular - regular[::-1]) <= 1)
        assert np.all(np.diff(regular[half:]) <= 0) and np.all(np.diff(regular[: half + 1]) >= 0)
        assert escape >= 1
        x = np.arange(-half, half + 1)
        true = np.where(x == 0, 1 - math.exp(-0.5 / scale),
                        np.exp(-np.abs(x) / scale) * math.sinh(0.5 / scale))
        tail = math.exp(-(half + 0.5) / scale)  # both tails beyond the support
        np.testing.assert_allclose(true.sum() + tail, 1.0, atol=1e-12)
        model = np.append(true, tail)
        bits = expected_bits(model, freqs, 16)
        assert entropy_bits(model) <= bits <= entropy_bits(model) + 0.01


@pytest.mark.parametrize("precision", [8, 12, 16])
def test_laplace_tables_precision(precision):
    cdfs, lengths, offsets = laplace_cdf_tables([0.2, 2.0, 50.0], precision=precision)
    assert np.all(cdfs[np.arange(3), lengths - 1] == 1 << precision)
    rc.CdfTables(cdfs, lengths, offsets, precision)


def test_laplace_tables_max_symbols_and_tail_mass():
    cdfs, lengths, offsets = laplace_cdf_tables([100.0], max_symbols=31)
    assert lengths[0] == 31 + 2 and offsets[0] == -15
    cdfs, lengths, offsets = laplace_cdf_tables([100.0], max_symbols=32)  # even: 31 symbols
    assert lengths[0] <= 32 + 2 and offsets[0] == -15
    wide = laplace_cdf_tables([2.0], tail_mass=1e-12)
    narrow = laplace_cdf_tables([2.0], tail_mass=1e-2)
    assert wide[1][0] > narrow[1][0]
    assert narrow[2][0] == -math.ceil(2.0 * math.log(100))
    # A larger tail mass means a larger escape bin.
    esc_n = narrow[0][0, narrow[1][0] - 1] - narrow[0][0, narrow[1][0] - 2]
    esc_w = wide[0][0, wide[1][0] - 1] - wide[0][0, wide[1][0] - 2]
    assert esc_n > esc_w >= 1


def test_laplace_tables_empty():
    cdfs, lengths, offsets = laplace_cdf_tables([])
    assert cdfs.shape[0] == 0 and lengths.shape == (0,) and offsets.shape == (0,)


@pytest.mark.parametrize("kwargs,match", [
    (dict(scales=[1.0, 0.0]), "scales must be finite and positive"),
    (dict(scales=[-1.0]), "scales must be finite and positive"),
    (dict(scales=[np.nan]), "scales must be finite and positive"),
    (dict(scales=[np.inf]), "scales must be finite and positive"),
    (dict(scales=[1.0], tail_mass=0.0), r"tail_mass must be in \(0, 1\), got 0.0"),
    (dict(scales=[1.0], tail_mass=1.0), r"tail_mass must be in \(0, 1\)"),
    (dict(scales=[1.0], precision=0), r"precision must be in \[1, 16\]"),
    (dict(scales=[1.0], precision=17), r"precision must be in \[1, 16\]"),
])
def test_laplace_tables_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        laplace_cdf_tables(**kwargs)


# ---------------------------------------------------------------------------------------------
# pack_cdfs
# ---------------------------------------------------------------------------------------------


def test_pack_cdfs_pads_with_the_last_entry():
    rows = [np.array([0, 3, 16]), np.array([0, 16]), np.array([0, 1, 2, 9, 16], np.int32)]
    cdfs, lengths = pack_cdfs(rows)
    assert cdfs.dtype == lengths.dtype == np.int32
    np.testing.assert_array_equal(lengths, [3, 2, 5])
    np.testing.assert_array_equal(cdfs, [[0, 3, 16, 16, 16], [0, 16, 16, 16, 16],
                                         [0, 1, 2, 9, 16]])
    # Usable as is, and it codes like the rows themselves.
    ct = rc.CdfTables(cdfs, lengths, [0, 0, 0], 4)
    sym = np.array([0, 1, 5, 2, 3, -1], np.int32)
    idx = np.array([0, 0, 1, 2, 2, 2], np.int32)
    np.testing.assert_array_equal(ct.decode(ct.encode(sym, idx), idx), sym)


def test_pack_cdfs_lists_and_empty():
    cdfs, lengths = pack_cdfs([[0, 5, 8], [0, 8]])
    np.testing.assert_array_equal(cdfs, [[0, 5, 8], [0, 8, 8]])
    cdfs, lengths = pack_cdfs([])
    assert cdfs.shape == (0, 0) and lengths.shape == (0,)


def test_pack_cdfs_rejects_values_outside_int32():
    with pytest.raises(ValueError):
        pack_cdfs([np.array([0, 2**32 + 5, 65536]), np.array([0, 65536])])
