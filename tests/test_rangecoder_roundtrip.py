"""Property tests: every int32 symbol sequence roundtrips through the range coder, exactly, for
any valid tables; the batch API and the thread count never change the bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _fastcodec_test_helpers import (
    INT32_MAX,
    INT32_MIN,
    Tables,
    coding_problem,
    escape_mask,
    make_tables,
    random_tables,
    symbol_for_row,
)
from fastcodec import rangecoder as rc

PROPERTY = settings(
    derandomize=True, database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = settings(PROPERTY, max_examples=50)


def _roundtrip_module(tables: Tables, symbols, indexes):
    data = rc.encode(symbols, indexes, *tables.args())
    assert isinstance(data, bytes)
    assert len(data) >= rc.STREAM_OVERHEAD_BYTES
    assert (len(data) - rc.STREAM_OVERHEAD_BYTES) % 4 == 0
    out = rc.decode(data, indexes, *tables.args())
    assert isinstance(out, np.ndarray) and out.dtype == np.int32
    assert out.shape == np.shape(indexes)
    np.testing.assert_array_equal(out, symbols)
    return data


# ---------------------------------------------------------------------------------------------
# Single streams
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(coding_problem())
def test_roundtrip_module_functions(problem):
    tables, symbols, indexes = problem
    data = _roundtrip_module(tables, symbols, indexes)
    # The same tables as a CdfTables object give the same bytes and decode the same.
    ct = rc.CdfTables(*tables.args())
    assert ct.num_tables == tables.num_tables
    assert ct.precision == tables.precision
    assert ct.encode(symbols, indexes) == data
    np.testing.assert_array_equal(ct.decode(data, indexes), symbols)
    # Deterministic: encoding again gives the same bytes.
    assert rc.encode(symbols, indexes, *tables.args()) == data


@PROPERTY
@given(coding_problem())
def test_roundtrip_lists_and_other_integer_dtypes(problem):
    """Python lists and int64 / non-contiguous arrays are accepted and code like int32."""
    tables, symbols, indexes = problem
    ref = rc.encode(symbols, indexes, *tables.args())
    as_lists = rc.encode(
        symbols.tolist(), indexes.tolist(), tables.cdfs.tolist(), tables.lengths.tolist(),
        tables.offsets.tolist(), tables.precision,
    )
    assert as_lists == ref
    as_int64 = rc.encode(
        symbols.astype(np.int64), indexes.astype(np.int64), tables.cdfs.astype(np.int64),
        tables.lengths.astype(np.int64), tables.offsets.astype(np.int64),
        np.int64(tables.precision),
    )
    assert as_int64 == ref
    # Non-contiguous int32 views (every other element of a doubled array).
    sym2 = np.repeat(symbols, 2)[::2]
    idx2 = np.repeat(indexes, 2)[::2]
    assert not (sym2.size > 1 and sym2.flags.c_contiguous)
    assert rc.encode(sym2, idx2, *tables.args()) == ref
    np.testing.assert_array_equal(
        rc.decode(ref, indexes.tolist(), tables.cdfs.tolist(), tables.lengths.tolist(),
                  tables.offsets.tolist(), tables.precision),
        symbols,
    )
    # bytearray / memoryview are accepted as stream data.
    np.testing.assert_array_equal(rc.decode(bytearray(ref), indexes, *tables.args()), symbols)
    np.testing.assert_array_equal(rc.decode(memoryview(ref), indexes, *tables.args()), symbols)


@FEWER
@given(coding_problem(), st.sampled_from([0, 1, 2, 3, 5]))
def test_roundtrip_small_counts(problem, n):
    """Counts that leave some of the 4 interleaved lanes empty or ragged."""
    tables, symbols, indexes = problem
    symbols, indexes = symbols[:n], indexes[:n]
    _roundtrip_module(tables, symbols, indexes)


@FEWER
@given(random_tables(), st.data())
def test_roundtrip_int32_extremes_and_escapes_both_sides(tables, data):
    """Every row gets INT32_MIN, INT32_MAX, the values just outside its range on both sides and
    its first/last regular values, in every lane position."""
    syms, idxs = [], []
    for t in range(tables.num_tables):
        off, nreg = int(tables.offsets[t]), int(tables.lengths[t]) - 2
        candidates = [INT32_MIN, INT32_MAX, off - 1, off + nreg, off, off + nreg - 1,
                      off - 1000, off + nreg + 1000]
        for v in candidates:
            if INT32_MIN <= v <= INT32_MAX:
                syms.append(v)
                idxs.append(t)
    perm = data.draw(st.permutations(range(len(syms))))
    symbols = np.array(syms, dtype=np.int32)[list(perm)]
    indexes = np.array(idxs, dtype=np.int32)[list(perm)]
    assert escape_mask(symbols, indexes, tables).any()
    for n in (len(symbols), len(symbols) - 1, 1):
        _roundtrip_module(tables, symbols[:n], indexes[:n])


@FEWER
@given(random_tables(), st.data())
def test_roundtrip_nd_shapes(tables, data):
    """Decode returns the shape of ``indexes`` for N-D inputs."""
    shape = data.draw(
        st.sampled_from([(1,), (0,), (3, 0), (2, 3), (1, 5), (2, 1, 3), (3, 2, 2, 1)])
    )
    n = int(np.prod(shape, dtype=np.int64))
    indexes = np.array(
        [data.draw(st.integers(0, tables.num_tables - 1)) for _ in range(n)], dtype=np.int32
    )
    symbols = np.array([data.draw(symbol_for_row(tables, int(t))) for t in indexes], np.int32)
    symbols, indexes = symbols.reshape(shape), indexes.reshape(shape)
    ct = rc.CdfTables(*tables.args())
    blob = ct.encode(symbols, indexes)
    out = ct.decode(blob, indexes)
    assert out.shape == shape and out.dtype == np.int32
    np.testing.assert_array_equal(out, symbols)
    # The flattened sequence is the same stream: the shape is not part of the bytes.
    assert ct.encode(symbols.reshape(-1), indexes.reshape(-1)) == blob
    np.testing.assert_array_equal(rc.decode(blob, indexes, *tables.args()), symbols)


def test_roundtrip_every_symbol_of_a_full_table():
    """Precision 4 with all 16 bins of frequency 1 and extreme offsets: every regular value,
    every lane, and both escape directions."""
    for offset in (INT32_MIN, -3, 0, INT32_MAX - 14, INT32_MAX):
        tables = make_tables([list(range(17))], [offset], 4)
        values = [offset + v for v in range(15) if offset + v <= INT32_MAX]
        values += [v for v in (offset - 1, offset + 15, INT32_MIN, INT32_MAX)
                   if INT32_MIN <= v <= INT32_MAX]
        symbols = np.array(values * 3, dtype=np.int32)
        indexes = np.zeros_like(symbols)
        for n in range(len(symbols) + 1):
            _roundtrip_module(tables, symbols[:n], indexes[:n])


@pytest.mark.parametrize("precision", [1, 3, 16])
def test_escape_only_rows_code_every_value(precision):
    """A row of length 2 has no regular values: everything, 0 included, is an escape."""
    top = 1 << precision
    tables = make_tables([[0, top], [0, top]], [0, 7], precision)
    rng = np.random.default_rng(5)
    symbols = np.concatenate([
        np.array([0, 1, -1, 7, 6, 8, INT32_MIN, INT32_MAX], np.int32),
        rng.integers(INT32_MIN, INT32_MAX, size=37, endpoint=True, dtype=np.int64).astype(np.int32),
    ])
    indexes = (np.arange(symbols.size) % 2).astype(np.int32)
    assert escape_mask(symbols, indexes, tables).all()
    _roundtrip_module(tables, symbols, indexes)


def test_precision_one():
    """The smallest precision: a row with one regular symbol and the escape bin, each 1/2."""
    tables = make_tables([[0, 1, 2]], [-5], 1)
    symbols = np.array([-5, -5, 3, -5, -6, INT32_MIN, -5, INT32_MAX, -4], np.int32)
    _roundtrip_module(tables, symbols, np.zeros(symbols.size, np.int32))


def test_large_random_stream_many_words():
    """A long stream with many renormalisations on every lane, mixed rows and escapes."""
    rng = np.random.default_rng(11)
    rows, offsets = [], []
    for t in range(7):
        n = int(rng.integers(1, 300))
        interior = np.sort(rng.choice(np.arange(1, 1 << 16), size=n, replace=False))
        rows.append([0, *interior.tolist(), 1 << 16])
        offsets.append(int(rng.integers(-200, 200)))
    tables = make_tables(rows, offsets, 16)
    n = 100_003
    indexes = rng.integers(0, 7, size=n).astype(np.int32)
    symbols = (tables.offsets[indexes].astype(np.int64)
               + rng.integers(-3, tables.lengths[indexes].astype(np.int64) + 1)).astype(np.int32)
    symbols[rng.integers(0, n, size=50)] = INT32_MAX
    data = _roundtrip_module(tables, symbols, indexes)
    assert len(data) > 1000


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@st.composite
def batch_problem(draw):
    tables = draw(random_tables(max_rows=4, max_length=16))
    batch = draw(st.integers(1, 6))
    item_shape = draw(st.sampled_from([(0,), (1,), (2,), (3,), (5,), (7,), (2, 3), (3, 1, 2)]))
    k = int(np.prod(item_shape))
    per_stream = draw(st.booleans())
    if per_stream:
        idx = [draw(st.integers(0, tables.num_tables - 1)) for _ in range(batch * k)]
        indexes = np.array(idx, np.int32).reshape((batch, *item_shape))
        flat_idx = indexes.reshape(batch, k)
    else:
        idx = [draw(st.integers(0, tables.num_tables - 1)) for _ in range(k)]
        indexes = np.array(idx, np.int32).reshape(item_shape)
        flat_idx = np.broadcast_to(indexes.reshape(1, k), (batch, k))
    sym = [draw(symbol_for_row(tables, int(t))) for t in flat_idx.reshape(-1)]
    symbols = np.array(sym, np.int32).reshape((batch, *item_shape))
    return tables, symbols, indexes, per_stream


@FEWER
@given(batch_problem())
def test_batch_matches_single_streams_for_every_thread_count(problem):
    tables, symbols, indexes, per_stream = problem
    batch = symbols.shape[0]
    ct = rc.CdfTables(*tables.args())
    streams = ct.encode_batch(symbols, indexes, threads=1)
    assert isinstance(streams, list) and len(streams) == batch
    assert all(isinstance(s, bytes) for s in streams)
    # Stream b is exactly what the single-stream encoder makes of row b.
    for b in range(batch):
        idx_b = indexes[b] if per_stream else indexes
        assert streams[b] == ct.encode(symbols[b], idx_b)
    for threads in (2, 3, None):
        assert ct.encode_batch(symbols, indexes, threads=threads) == streams
    assert rc.encode_batch(symbols, indexes, *tables.args(), threads=2) == streams
    for threads in (1, 2, 3, None):
        out = ct.decode_batch(streams, indexes, threads=threads, shared=not per_stream)
        assert out.dtype == np.int32 and out.shape == symbols.shape
        np.testing.assert_array_equal(out, symbols)
    out = rc.decode_batch(streams, indexes, *tables.args(), threads=3, shared=not per_stream)
    np.testing.assert_array_equal(out, symbols)
    # Default (shared=None): unambiguous unless per-stream-looking shared indexes.
    ambiguous = (not per_stream) and indexes.ndim >= 2 and indexes.shape[0] == batch
    if not ambiguous:
        np.testing.assert_array_equal(ct.decode_batch(streams, indexes), symbols)
        # Any iterable of bytes-like objects.
        gen = (bytearray(s) for s in streams)
        np.testing.assert_array_equal(ct.decode_batch(gen, indexes, threads=2), symbols)


def test_batch_threads_give_identical_bytes_on_a_larger_batch(laplace):
    tables, symbols, indexes = laplace
    ct = rc.CdfTables(*tables.args())
    # 8 streams of [192, 4, 24]: the 16 rows of each image split in 4 slices.
    sym = symbols.reshape(2, 192, 4, 4, 24).transpose(0, 2, 1, 3, 4).reshape(8, 192, 4, 24)
    ref = ct.encode_batch(sym, indexes[:, :4], threads=1)
    assert len(set(ref)) == len(ref)  # different streams, different bytes
    for threads in (2, 3, 8, None):
        assert ct.encode_batch(sym, indexes[:, :4], threads=threads) == ref
        np.testing.assert_array_equal(ct.decode_batch(ref, indexes[:, :4], threads=threads), sym)


def test_decode_batch_shared_keyword_disambiguates():
    """Indexes [2, 3] with 2 streams: per stream by default, 2x3 items per stream if shared."""
    tables = make_tables([[0, 3, 60000, 65536], [0, 100, 65536]], [-1, 4], 16)
    ct = rc.CdfTables(*tables.args())
    idx = np.array([[0, 1, 0], [1, 1, 0]], np.int32)

    # Shared: each stream holds 6 symbols shaped [2, 3].
    sym_shared = np.array([[[0, 4, -1], [5, 4, 1]], [[-1, 5, 99], [INT32_MIN, 4, 0]]], np.int32)
    streams = ct.encode_batch(sym_shared, idx)
    out = ct.decode_batch(streams, idx, shared=True)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, sym_shared)

    # Per stream: each stream holds 3 symbols, stream b uses idx[b].
    sym_per = np.array([[0, 4, 1], [5, 4, -7]], np.int32)
    streams2 = ct.encode_batch(sym_per, idx)
    for shared in (None, False):
        out = ct.decode_batch(streams2, idx, shared=shared)
        assert out.shape == (2, 3)
        np.testing.assert_array_equal(out, sym_per)
    # Per-stream indexes really are per stream: stream 1 differs from coding row 0's indexes.
    assert streams2[1] == ct.encode(sym_per[1], idx[1])
    assert streams2[1] != ct.encode(sym_per[1], idx[0])
    # A 1-D shared index vector of length B is still shared by default.
    sym_1d = np.array([[0, 1], [2, -1]], np.int32)
    idx_1d = np.array([0, 0], np.int32)
    st2 = ct.encode_batch(sym_1d, idx_1d)
    np.testing.assert_array_equal(ct.decode_batch(st2, idx_1d), sym_1d)
    # shared=False with a 1-D vector of length B: one symbol per stream.
    sym_one = np.array([[2], [-3]], np.int32)
    st3 = ct.encode_batch(sym_one, idx_1d.reshape(2, 1))
    out = ct.decode_batch(st3, idx_1d, shared=False)
    assert out.shape == (2,)
    np.testing.assert_array_equal(out, sym_one.reshape(2))


def test_batch_of_one_dimensional_symbols_one_symbol_per_stream():
    tables = make_tables([[0, 7, 9, 16], [0, 1, 16]], [3, -2], 4)
    ct = rc.CdfTables(*tables.args())
    symbols = np.array([3, 4, 5, INT32_MIN, -2], np.int32)
    indexes = np.array([0, 0, 0, 1, 1], np.int32)
    streams = ct.encode_batch(symbols, indexes)  # per stream: indexes.shape == symbols.shape
    assert len(streams) == 5
    assert streams[3] == ct.encode(symbols[3:4], indexes[3:4])
    out = ct.decode_batch(streams, indexes, shared=False)
    assert out.shape == (5,)
    np.testing.assert_array_equal(out, symbols)


def test_zero_dimensional_symbol_and_index():
    """A 0-D symbol with a 0-D index is one symbol; decode returns a 0-D array."""
    tables = make_tables([[0, 7, 9, 16]], [3], 4)
    ct = rc.CdfTables(*tables.args())
    for sym in (np.int32(4), np.array(INT32_MIN, np.int32), 5, np.array(-9, np.int64)):
        for idx in (np.int32(0), np.array(0, np.int32), 0):
            blob = ct.encode(sym, idx)
            out = ct.decode(blob, idx)
            assert out.shape == () and out.dtype == np.int32
            assert int(out) == int(sym)


def test_batch_with_zero_dimensional_shared_index():
    """1-D symbols [B] with a 0-D shared index: one symbol per stream, all with row 0."""
    tables = make_tables([[0, 7, 9, 16]], [3], 4)
    ct = rc.CdfTables(*tables.args())
    symbols = np.array([3, 4, 5, INT32_MIN, 2], np.int32)
    streams = ct.encode_batch(symbols, np.int32(0))
    out = ct.decode_batch(streams, np.array(0, np.int32))
    assert out.shape == (5,)
    np.testing.assert_array_equal(out, symbols)


def test_empty_batch_of_empty_items():
    tables = make_tables([[0, 7, 9, 16]], [3], 4)
    ct = rc.CdfTables(*tables.args())
    streams = ct.encode_batch(np.zeros((3, 0), np.int32), np.zeros(0, np.int32))
    assert len(streams) == 3 and all(len(s) == rc.STREAM_OVERHEAD_BYTES for s in streams)
    out = ct.decode_batch(streams, np.zeros(0, np.int32))
    assert out.shape == (3, 0)
    out = ct.decode_batch([], np.zeros(4, np.int32))
    assert out.shape == (0, 4) and out.dtype == np.int32


@pytest.mark.parametrize("per_stream", [False, True])
def test_zero_streams(per_stream):
    """A batch of B = 0 streams encodes to [] and decodes to an empty [0, K] array."""
    tables = make_tables([[0, 7, 9, 16]], [3], 4)
    ct = rc.CdfTables(*tables.args())
    idx = np.zeros((0, 4) if per_stream else (4,), np.int32)
    assert ct.encode_batch(np.zeros((0, 4), np.int32), idx) == []
    out = ct.decode_batch([], idx, shared=not per_stream)
    assert out.shape == (0, 4)
