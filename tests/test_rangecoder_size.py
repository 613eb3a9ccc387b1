"""Compressed size against the ideal cross-entropy of the symbols under the tables.

rANS writes 32-bit words; what is not yet written stays in the four 64-bit final states, which
every stream stores (``STREAM_OVERHEAD_BYTES``). With ``W`` words and final states ``x_k``:
``32 W = ideal + 4 log2(2^31) - sum log2(x_k) + (rounding, <= 2^-15 relative per symbol)``, so
``ideal - 128 <~ 32 W <~ ideal`` (plus the bypass code of escaped values). The tests check both
sides: more bytes means a wasteful coder, fewer means the reference computation is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from _fastcodec_test_helpers import (
    INT32_MAX,
    INT32_MIN,
    cdf_from_freqs,
    coding_problem,
    escape_mask,
    ideal_bits,
    laplace_workload,
    make_tables,
    payload_bits,
)
from fastcodec import rangecoder as rc
from fastcodec.entropy import laplace_cdf_tables

OVERHEAD = rc.STREAM_OVERHEAD_BYTES
REL = 1e-4  # allowed relative excess over the ideal cross-entropy
LANE_SLACK_BITS = 4 * 32  # information the final states may hold beyond the written words
ESCAPE_BITS_LAPLACE = 45  # generous cost of one (small) escaped value's bypass code
ESCAPE_BITS_ANY = 64  # generous cost of any escaped int32 value


def check_size(stream: bytes, ideal: float, escapes: int, escape_bits: float, count: int):
    got = payload_bits(stream, OVERHEAD)
    assert got >= 0 and got % 32 == 0
    upper = ideal * (1 + REL) + escape_bits * escapes + 4.5e-5 * count
    assert got <= upper, f"{got} coded bits > ideal {ideal:.1f} (+ {escapes} escapes)"
    lower = ideal * (1 - REL) - LANE_SLACK_BITS - 4.5e-5 * count
    assert got >= lower, f"{got} coded bits < ideal {ideal:.1f} - {LANE_SLACK_BITS}"
    return got


def test_stream_overhead_constant():
    assert OVERHEAD == 32
    tables = make_tables([[0, 5, 1 << 16]], [0], 16)
    assert len(rc.encode(np.zeros(0, np.int32), np.zeros(0, np.int32), *tables.args())) == 32


def test_laplace_workload_size_with_escapes(laplace):
    tables, symbols, indexes = laplace
    streams = rc.encode_batch(symbols, indexes, *tables.args())
    total_escapes = 0
    for b, stream in enumerate(streams):
        esc = int(escape_mask(symbols[b], indexes, tables).sum())
        total_escapes += esc
        ideal = ideal_bits(symbols[b], indexes, tables)
        assert ideal > 100_000  # a real workload, not a degenerate one
        check_size(stream, ideal, esc, ESCAPE_BITS_LAPLACE, indexes.size)
    assert total_escapes > 0, "the workload should exercise escapes (scales up to 20)"


def test_laplace_workload_size_without_escapes(laplace):
    """Symbols clipped into each row's support: no escapes, size within 1e-4 + overhead."""
    tables, symbols, indexes = laplace
    low = tables.offsets[indexes].astype(np.int64)
    high = low + tables.lengths[indexes].astype(np.int64) - 3
    clipped = np.clip(symbols, low, high).astype(np.int32)
    assert not np.array_equal(clipped, symbols)
    streams = rc.encode_batch(clipped, indexes, *tables.args())
    total_ideal = 0.0
    for b, stream in enumerate(streams):
        assert not escape_mask(clipped[b], indexes, tables).any()
        ideal = ideal_bits(clipped[b], indexes, tables)
        total_ideal += ideal
        check_size(stream, ideal, 0, 0, indexes.size)
        assert len(stream) <= ideal / 8 * (1 + REL) + OVERHEAD
    total = sum(len(s) for s in streams)
    assert total <= total_ideal / 8 * (1 + REL) + OVERHEAD * len(streams)


def test_laplace_workload_single_stream_equals_batch(laplace):
    tables, symbols, indexes = laplace
    one = rc.encode(symbols[0], indexes, *tables.args())
    assert one == rc.encode_batch(symbols[:1], indexes, *tables.args())[0]


@pytest.mark.parametrize("precision", [8, 12, 16])
def test_laplace_size_at_lower_precision(precision):
    """Tables at other precisions (same workload, smaller): still within the bound."""
    tables, symbols, indexes = laplace_workload(shape=(1, 192, 4, 8), seed=99)
    cdfs, lengths, offsets = laplace_cdf_tables(
        np.exp(np.random.default_rng(3).uniform(np.log(0.1), np.log(20), 192)), precision
    )
    tables = type(tables)(cdfs, lengths, offsets, precision)
    stream = rc.encode(symbols[0], indexes, *tables.args())
    np.testing.assert_array_equal(rc.decode(stream, indexes, *tables.args()), symbols[0])
    esc = int(escape_mask(symbols[0], indexes, tables).sum())
    check_size(stream, ideal_bits(symbols[0], indexes, tables), esc, ESCAPE_BITS_LAPLACE,
               indexes.size)


# ---------------------------------------------------------------------------------------------
# Skewed tables
# ---------------------------------------------------------------------------------------------

SKEWED = make_tables(
    [
        cdf_from_freqs([1, (1 << 16) - 2, 1]),  # 0: freq 1, 1: freq 2^16 - 2, escape: 1
        cdf_from_freqs([(1 << 16) - 2, 1, 1]),  # the big bin first
        cdf_from_freqs([1] * 100 + [(1 << 16) - 101, 1]),  # many freq-1 bins, then a big one
    ],
    [0, -3, 1000],
    16,
)


@pytest.mark.parametrize("row", [0, 1, 2])
def test_skewed_tables_size_and_roundtrip(row):
    rng = np.random.default_rng(row)
    n = 40_000
    off = int(SKEWED.offsets[row])
    likely = {0: 1, 1: 0, 2: 100}[row]
    symbols = np.full(n, off + likely, np.int64)
    rare_pos = rng.choice(n, size=500, replace=False)
    rare = {0: [0], 1: [1], 2: list(range(100))}[row]
    symbols[rare_pos] = off + rng.choice(rare, size=500)
    esc_pos = rng.choice(n, size=20, replace=False)
    symbols[esc_pos] = off - rng.integers(1, 50, size=20)
    symbols = symbols.astype(np.int32)
    indexes = np.full(n, row, np.int32)
    stream = rc.encode(symbols, indexes, *SKEWED.args())
    np.testing.assert_array_equal(rc.decode(stream, indexes, *SKEWED.args()), symbols)
    esc = int(escape_mask(symbols, indexes, SKEWED).sum())
    assert esc == 20
    ideal = ideal_bits(symbols, indexes, SKEWED)
    assert ideal > 500 * 16  # the rare symbols cost ~16 bits each
    check_size(stream, ideal, esc, ESCAPE_BITS_LAPLACE, n)


@pytest.mark.parametrize("row,symbol", [(0, 1), (1, -3)])
def test_skewed_tables_likely_symbol_is_nearly_free(row, symbol):
    """40 000 symbols of probability 1 - 2^-15 carry under 2 bits: no word gets written."""
    n = 40_000
    indexes = np.full(n, row, np.int32)
    symbols = np.full(n, symbol, np.int32)
    ideal = ideal_bits(symbols, indexes, SKEWED)
    assert ideal < 2
    stream = rc.encode(symbols, indexes, *SKEWED.args())
    assert len(stream) == OVERHEAD
    np.testing.assert_array_equal(rc.decode(stream, indexes, *SKEWED.args()), symbols)


def test_skewed_table_big_bin_after_many_small_ones():
    n = 40_000
    indexes = np.full(n, 2, np.int32)
    symbols = np.full(n, 1100, np.int32)
    ideal = ideal_bits(symbols, indexes, SKEWED)
    assert 50 < ideal < 100  # 40 000 * -log2(65435 / 65536)
    stream = rc.encode(symbols, indexes, *SKEWED.args())
    np.testing.assert_array_equal(rc.decode(stream, indexes, *SKEWED.args()), symbols)
    check_size(stream, ideal, 0, 0, n)


@pytest.mark.parametrize("row,symbol", [(0, 0), (1, -2), (2, 1050)])
def test_skewed_tables_unlikely_symbol_costs_exactly_precision_bits(row, symbol):
    """Symbols in a bin of frequency 1 cost 16 bits each, to 1e-4."""
    n = 4_001
    indexes = np.full(n, row, np.int32)
    symbols = np.full(n, symbol, np.int32)
    ideal = ideal_bits(symbols, indexes, SKEWED)
    assert ideal == pytest.approx(16 * n)
    stream = rc.encode(symbols, indexes, *SKEWED.args())
    np.testing.assert_array_equal(rc.decode(stream, indexes, *SKEWED.args()), symbols)
    check_size(stream, ideal, 0, 0, n)


def test_uniform_table_costs_log2_of_the_alphabet():
    """A uniform 256-symbol table (precision 16 with a tiny escape) codes bytes in ~8 bits."""
    freqs = [255] * 256 + [(1 << 16) - 255 * 256]
    tables = make_tables([cdf_from_freqs(freqs)], [0], 16)
    rng = np.random.default_rng(8)
    symbols = rng.integers(0, 256, size=20_000).astype(np.int32)
    indexes = np.zeros_like(symbols)
    stream = rc.encode(symbols, indexes, *tables.args())
    ideal = ideal_bits(symbols, indexes, tables)
    assert ideal == pytest.approx(20_000 * (16 - np.log2(255)))
    check_size(stream, ideal, 0, 0, symbols.size)


def test_extreme_escapes_cost_is_bounded():
    """INT32 extremes coded with extreme offsets: every symbol escapes, each within 64 bits."""
    tables = make_tables([cdf_from_freqs([60000, 5536]), cdf_from_freqs([1 << 16])],
                         [INT32_MAX, INT32_MIN], 16)
    symbols = np.array([INT32_MIN, INT32_MAX] * 500, np.int32)
    indexes = np.array([0, 1] * 500, np.int32)
    stream = rc.encode(symbols, indexes, *tables.args())
    np.testing.assert_array_equal(rc.decode(stream, indexes, *tables.args()), symbols)
    esc = int(escape_mask(symbols, indexes, tables).sum())
    assert esc == symbols.size
    check_size(stream, ideal_bits(symbols, indexes, tables), esc, ESCAPE_BITS_ANY, symbols.size)
    # Escaped values are not free: 2^32 - 1 away from the table needs over 32 bits.
    assert payload_bits(stream, OVERHEAD) >= 32 * esc - LANE_SLACK_BITS


def test_small_escapes_cost_less_than_large_ones():
    """The bypass code adapts to the magnitude: far escapes cost more than near ones."""
    tables = make_tables([cdf_from_freqs([30000, 30000, 5536])], [0], 16)
    n = 4000
    idx = np.zeros(n, np.int32)
    near = rc.encode(np.full(n, 2, np.int32), idx, *tables.args())
    far = rc.encode(np.full(n, 1 << 30, np.int32), idx, *tables.args())
    assert len(near) < len(far)
    assert payload_bits(near, OVERHEAD) <= n * (16 - np.log2(5536) + 3)
    assert payload_bits(far, OVERHEAD) >= n * 30


@settings(derandomize=True, database=None, deadline=None, max_examples=80,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(coding_problem())
def test_size_bound_on_random_tables(problem):
    tables, symbols, indexes = problem
    stream = rc.encode(symbols, indexes, *tables.args())
    esc = int(escape_mask(symbols, indexes, tables).sum())
    check_size(stream, ideal_bits(symbols, indexes, tables), esc, ESCAPE_BITS_ANY, symbols.size)
