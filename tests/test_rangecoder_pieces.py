"""One stream coded in pieces, each with its own tables (fastcodec.rangecoder.PieceEncoder /
PieceDecoder): exact roundtrip for any tables and piece sizes, the same bytes as one call when
there is one piece, and clear errors (never a crash) for bad arguments and bad bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _fastcodec_test_helpers import random_tables, symbol_for_row
from fastcodec import rangecoder as rc

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=80,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def pieces(draw):
    """1..6 pieces of 0..9 symbols (sizes off the 4-lane grid), each with tables of its own or
    an earlier piece's, all of one precision."""
    precision = draw(st.integers(1, 16))
    out, seen = [], []
    for _ in range(draw(st.integers(1, 6))):
        if seen and draw(st.booleans()):
            tables = draw(st.sampled_from(seen))
        else:
            tables = draw(random_tables(max_rows=4, max_length=12, precision=precision))
            seen.append(tables)
        n = draw(st.integers(0, 9))
        idx = [draw(st.integers(0, tables.num_tables - 1)) for _ in range(n)]
        sym = [draw(symbol_for_row(tables, t)) for t in idx]
        out.append((tables, np.array(sym, np.int32), np.array(idx, np.int32)))
    return out


def _encode(problem):
    coders = {id(t): rc.CdfTables(*t.args()) for t, _, _ in problem}
    enc = rc.PieceEncoder()
    for t, sym, idx in problem:
        enc.add(coders[id(t)], sym, idx)
    assert len(enc) == len(problem)
    return enc.flush(), coders


@PROPERTY
@given(pieces())
def test_pieces_roundtrip_exactly(problem):
    data, coders = _encode(problem)
    dec = rc.PieceDecoder(data)
    for t, sym, idx in problem:
        out = dec.decode(coders[id(t)], idx)
        assert out.dtype == np.int32 and out.shape == idx.shape
        np.testing.assert_array_equal(out, sym)
    assert dec.decoded == sum(len(s) for _, s, _ in problem)
    dec.finish()


@PROPERTY
@given(pieces())
def test_one_piece_is_an_ordinary_stream(problem):
    t, sym, idx = problem[0]
    tables = rc.CdfTables(*t.args())
    enc = rc.PieceEncoder()
    enc.add(tables, sym, idx)
    data = enc.flush()
    assert data == tables.encode(sym, idx)
    np.testing.assert_array_equal(rc.PieceDecoder(data).decode(tables, idx), sym)


def test_pieces_with_rebuilt_equal_tables_are_one_ordinary_stream():
    """A context model rebuilds its tables for every position: equal contents are one table
    set, so the stream is the one-call stream and the merged set does not grow per piece."""
    rows, lengths, offsets = [[0, 9000, 60000, 65536], [0, 1, 65536, 65536]], [4, 3], [-1, 4]
    rng = np.random.default_rng(2)
    enc, all_sym, all_idx = rc.PieceEncoder(), [], []
    for _ in range(50):
        idx = rng.integers(0, 2, 3)
        sym = rng.integers(-3, 6, 3)
        enc.add(rc.CdfTables(rows, lengths, offsets, 16), sym, idx)
        all_sym.append(sym)
        all_idx.append(idx)
    assert len(enc._distinct) == 1
    data = enc.flush()
    one = rc.CdfTables(rows, lengths, offsets, 16)
    assert data == one.encode(np.concatenate(all_sym), np.concatenate(all_idx))
    dec = rc.PieceDecoder(data)
    for sym, idx in zip(all_sym, all_idx):
        np.testing.assert_array_equal(dec.decode(rc.CdfTables(rows, lengths, offsets, 16), idx),
                                      sym)
    dec.finish()


def _two_tables():
    a = rc.CdfTables([[0, 1000, 40000, 65535, 65536]], [5], [-1], 16)
    b = rc.CdfTables([[0, 30000, 65536, 0], [0, 100, 200, 65536]], [3, 4], [5, -2], 16)
    return a, b


def _problem(seed=0, n=40):
    """Pieces of sizes 1..7 alternating two tables; symbols mostly in range, some escapes."""
    a, b = _two_tables()
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        tables = a if k % 2 else b
        size = int(rng.integers(1, 8))
        idx = rng.integers(0, tables.num_tables, size).astype(np.int32)
        sym = rng.integers(-4, 8, size).astype(np.int32)
        out.append((tables, sym, idx))
    return out


def _encoded(problem):
    enc = rc.PieceEncoder()
    for tables, sym, idx in problem:
        enc.add(tables, sym, idx)
    return enc.flush()


def test_flush_starts_over_and_an_empty_stream_decodes():
    enc = rc.PieceEncoder()
    empty = enc.flush()
    assert len(empty) == rc.STREAM_OVERHEAD_BYTES
    rc.PieceDecoder(empty).finish()
    a, _ = _two_tables()
    enc.add(a, [0, 1, 2], [0, 0, 0])
    first = enc.flush()
    assert len(enc) == 0 and enc.flush() == empty
    enc.add(a, [0, 1, 2], [0, 0, 0])
    assert enc.flush() == first


def test_finish_refuses_a_stream_not_decoded_to_its_end():
    problem = _problem()
    dec = rc.PieceDecoder(_encoded(problem))
    for tables, sym, idx in problem[:-1]:
        np.testing.assert_array_equal(dec.decode(tables, idx), sym)
    with pytest.raises(ValueError, match="not all of it decoded"):
        dec.finish()


def test_add_checks_each_piece_now():
    a, b = _two_tables()
    enc = rc.PieceEncoder()
    with pytest.raises(ValueError, match=r"indexes must be in \[0, 2\)"):
        enc.add(b, [1, 2], [0, 2])
    with pytest.raises(ValueError, match="3 entries but indexes has 2"):
        enc.add(b, [1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="must be CdfTables"):
        enc.add([[0, 65536]], [1], [0])
    with pytest.raises(ValueError, match="integers"):
        enc.add(a, [0.5], [0])
    enc.add(a, [1], [0])
    coarse = rc.CdfTables([[0, 1, 2]], [3], [0], 1)
    with pytest.raises(ValueError, match="same precision: 1 after 16"):
        enc.add(coarse, [0], [0])
    assert len(enc) == 1  # the refused pieces left nothing behind


def test_decode_checks_its_arguments():
    a, b = _two_tables()
    dec = rc.PieceDecoder(_encoded(_problem()))
    with pytest.raises(ValueError, match="index"):
        dec.decode(a, [1])  # a has one row
    with pytest.raises(ValueError, match="must be CdfTables"):
        dec.decode("tables", [0])
    with pytest.raises(ValueError, match="must be bytes"):
        rc.PieceDecoder([1, 2, 3])
    with pytest.raises(ValueError, match="shorter than"):
        rc.PieceDecoder(b"\x00" * 8)


@pytest.mark.parametrize("damage", ["truncate", "flip", "append", "wrong_tables"])
def test_bad_bytes_raise_and_the_decoder_stays_failed(damage):
    problem = _problem(seed=3)
    data = bytearray(_encoded(problem))
    a, b = _two_tables()
    if damage == "truncate":
        data = data[4:]  # drops the first word: every state still looks valid
    elif damage == "flip":
        data[len(data) // 3] ^= 0x5A
    elif damage == "append":
        data = b"\x00\x00\x00\x01" + data
    else:
        problem = [(b if t is a else a, s, np.zeros_like(i)) for t, s, i in problem]
    dec = rc.PieceDecoder(bytes(data))
    with pytest.raises(ValueError, match="corrupt|truncated|not all of it decoded|earlier"):
        for tables, sym, idx in problem:
            if not np.array_equal(dec.decode(tables, idx), sym):
                break  # damage may show only as different values; finish() must then refuse
        dec.finish()


def test_a_failed_decoder_refuses_further_pieces():
    problem = _problem(seed=5)
    dec = rc.PieceDecoder(_encoded(problem)[8:])  # two words short
    failed_at = None
    for k, (tables, _, idx) in enumerate(problem):
        try:
            dec.decode(tables, idx)
        except ValueError as exc:
            failed_at = k
            assert "ran out of data" in str(exc)
            break
    assert failed_at is not None
    tables, _, idx = problem[failed_at]
    with pytest.raises(ValueError, match="failed to decode earlier"):
        dec.decode(tables, idx)


def test_random_bytes_never_crash():
    a, b = _two_tables()
    rng = np.random.default_rng(11)
    for trial in range(300):
        size = 32 + 4 * int(rng.integers(0, 12))
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        try:
            dec = rc.PieceDecoder(data)
            for k in range(int(rng.integers(1, 20))):
                tables = a if k % 2 else b
                dec.decode(tables, rng.integers(0, tables.num_tables, int(rng.integers(0, 9))))
            dec.finish()
        except ValueError:
            pass
