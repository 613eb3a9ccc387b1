"""Malformed input raises ValueError naming the problem; corrupt streams never crash or hang.

A crash of the native decoder would kill the pytest process, which fails the run; the random-bytes
fuzz also runs in a subprocess with a timeout so that a crash or a hang is reported as such.
"""

from __future__ import annotations

import subprocess
import tempfile
import sys
import textwrap

import numpy as np
import pytest

from _fastcodec_test_helpers import INT32_MAX, INT32_MIN, laplace_workload, make_tables
from fastcodec import rangecoder as rc

# Two valid rows at precision 16: 2 regular symbols + escape, and an escape-only row.
CDFS = np.array([[0, 10, 30000, 65536], [0, 65536, 65536, 65536]], np.int32)
LENGTHS = np.array([4, 2], np.int32)
OFFSETS = np.array([-1, 5], np.int32)
TABLES = (CDFS, LENGTHS, OFFSETS, 16)
SYMS = np.array([0, -1, 7, 5, INT32_MIN], np.int32)
IDX = np.array([0, 0, 1, 0, 1], np.int32)


@pytest.fixture(scope="module")
def ct():
    return rc.CdfTables(*TABLES)


@pytest.fixture(scope="module")
def blob(ct):
    return ct.encode(SYMS, IDX)


def test_reference_input_is_valid(ct, blob):
    """The inputs the error tests perturb are valid as they are."""
    np.testing.assert_array_equal(ct.decode(blob, IDX), SYMS)
    np.testing.assert_array_equal(rc.decode(blob, IDX, *TABLES), SYMS)


# ---------------------------------------------------------------------------------------------
# dtypes and ranks
# ---------------------------------------------------------------------------------------------

BAD_INTEGER_INPUTS = [
    (np.array([0.0, 1.0, 2.0, 3.0, 4.0]), "must hold integers, got dtype float64"),
    (np.array([0, 1, 2, 3, 4], np.float32), "must hold integers, got dtype float32"),
    ([0.5, 1, 2, 3, 4], "must hold integers, got dtype float64"),
    (np.array([0, 1, 2, 3, 4], dtype=object), "must hold integers, got dtype object"),
    (np.array([True, False, True, False, True]), "must hold integers, got dtype bool"),
    ("abcde", "must hold integers, got dtype <U5"),
    (["a", "b", "c", "d", "e"], "must hold integers, got dtype <U1"),
    (np.array([b"a", b"b", b"c", b"d", b"e"]), r"must hold integers, got dtype \|S1"),
    (None, "must hold integers, got dtype object"),
    ([0, [1, 2], 3, 4, 5], "must be a rectangular integer array"),
    ([1 + 2j] * 5, "must hold integers, got dtype complex128"),
]


@pytest.mark.parametrize("value,match", BAD_INTEGER_INPUTS)
def test_bad_symbols_dtype(ct, value, match):
    with pytest.raises(ValueError, match="symbols " + match):
        ct.encode(value, IDX)
    with pytest.raises(ValueError, match="symbols " + match):
        rc.encode(value, IDX, *TABLES)


@pytest.mark.parametrize("value,match", BAD_INTEGER_INPUTS)
def test_bad_indexes_dtype(ct, blob, value, match):
    with pytest.raises(ValueError, match="indexes " + match):
        ct.encode(SYMS, value)
    with pytest.raises(ValueError, match="indexes " + match):
        ct.decode(blob, value)
    with pytest.raises(ValueError, match="indexes " + match):
        ct.encode_batch(SYMS.reshape(1, 5), value)
    with pytest.raises(ValueError, match="indexes " + match):
        ct.decode_batch([blob], value)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("cdfs", {"cdfs": CDFS.astype(np.float64)}, "cdfs must hold integers, got dtype float64"),
        ("cdfs", {"cdfs": CDFS.astype(bool)}, "cdfs must hold integers, got dtype bool"),
        ("cdfs", {"cdfs": CDFS.astype(object)}, "cdfs must hold integers, got dtype object"),
        ("cdf_lengths", {"cdf_lengths": [4.0, 2.0]}, "cdf_lengths must hold integers"),
        ("offsets", {"offsets": ["a", "b"]}, "offsets must hold integers"),
        ("cdfs", {"cdfs": [[0, 65536], [0, 1, 65536]]}, "cdfs must be a rectangular integer"),
        ("cdfs", {"cdfs": CDFS[0]}, r"cdfs must be 2-D, got shape \(4,\)"),
        ("cdfs", {"cdfs": CDFS[None]}, r"cdfs must be 2-D, got shape \(1, 2, 4\)"),
        ("cdf_lengths", {"cdf_lengths": LENGTHS[None]}, r"cdf_lengths must be 1-D, got shape"),
        ("offsets", {"offsets": OFFSETS.reshape(2, 1)}, r"offsets must be 1-D, got shape \(2, 1\)"),
        ("precision", {"precision": 16.0}, "precision must be an integer, got 16.0"),
        ("precision", {"precision": "16"}, "precision must be an integer"),
        ("precision", {"precision": True}, "precision must be an integer, got True"),
        ("precision", {"precision": None}, "precision must be an integer, got None"),
    ],
)
def test_bad_table_types_and_ranks(name, kwargs, match):
    args = dict(cdfs=CDFS, cdf_lengths=LENGTHS, offsets=OFFSETS, precision=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rc.CdfTables(**args)
    with pytest.raises(ValueError, match=match):
        rc.encode(SYMS, IDX, **args)


@pytest.mark.parametrize(
    "name,value",
    [
        ("symbols", [INT32_MAX + 1, 0, 0, 0, 0]),
        ("symbols", np.array([0, 0, INT32_MIN - 1, 0, 0], np.int64)),
        ("symbols", np.array([0, 0, 0, 0, 2**63], np.uint64)),
        ("symbols", np.array([0, 0, 0, 0, 2**32], np.uint64)),
        ("indexes", np.array([0, 0, 0, 0, 2**32], np.int64)),
        ("indexes", np.array([0, 0, 0, 0, -(2**40)], np.int64)),
    ],
)
def test_values_outside_int32(ct, name, value):
    sym, idx = (value, IDX) if name == "symbols" else (SYMS, value)
    with pytest.raises(ValueError, match=f"{name} has values outside the int32 range"):
        ct.encode(sym, idx)


def test_huge_python_ints_are_rejected(ct):
    with pytest.raises(ValueError, match="symbols must hold integers, got dtype object"):
        ct.encode([2**70, 0, 0, 0, 0], IDX)


@pytest.mark.parametrize(
    "name,value",
    [
        ("cdfs", CDFS.astype(np.int64) + np.array([[0, 0, 0, 2**32]])),
        ("cdf_lengths", np.array([4, 2**32 + 2], np.int64)),
        ("offsets", np.array([INT32_MAX + 1, 0], np.int64)),
        ("offsets", np.array([0, INT32_MIN - 1], np.int64)),
    ],
)
def test_table_values_outside_int32(name, value):
    args = dict(cdfs=CDFS, cdf_lengths=LENGTHS, offsets=OFFSETS, precision=16)
    args[name] = value
    with pytest.raises(ValueError, match=f"{name} has values outside the int32 range"):
        rc.CdfTables(**args)


def test_int32_extremes_in_int64_input_are_fine(ct):
    sym = np.array([INT32_MIN, INT32_MAX, 0, -1, 1], np.int64)
    blob = ct.encode(sym, IDX.astype(np.int64))
    np.testing.assert_array_equal(ct.decode(blob, IDX.astype(np.uint8)), sym)


def test_symbols_indexes_shape_mismatch(ct):
    cases = [
        (lambda: ct.encode(SYMS[:4], IDX), r"\(4,\) but indexes has shape \(5,\)"),
        (lambda: rc.encode(SYMS, IDX[:4], *TABLES), r"\(5,\) but indexes has shape \(4,\)"),
        (lambda: ct.encode(SYMS[None], IDX), r"\(1, 5\) but indexes has shape \(5,\)"),
        (lambda: ct.encode(np.ones(6, np.int32), np.zeros((2, 3), np.int32)),
         r"\(6,\) but indexes has shape \(2, 3\)"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match="symbols has shape " + match):
            call()


# ---------------------------------------------------------------------------------------------
# Table contents
# ---------------------------------------------------------------------------------------------


def _tables_error(cdfs=CDFS, lengths=LENGTHS, offsets=OFFSETS, precision=16, match=""):
    with pytest.raises(ValueError, match=match):
        rc.CdfTables(cdfs, lengths, offsets, precision)
    with pytest.raises(ValueError, match=match):
        rc.decode(b"\0" * 32, [0], cdfs, lengths, offsets, precision)


def test_cdf_row_not_starting_at_zero():
    bad = CDFS.copy()
    bad[1, 0] = 3
    _tables_error(cdfs=bad, match=r"cdfs row 1: cdf\[0\] = 3, must be 0")
    bad = CDFS.copy()
    bad[0, 0] = -1
    _tables_error(cdfs=bad, match=r"cdfs row 0: cdf\[0\] = -1, must be 0")


def test_cdf_row_not_ending_at_total():
    bad = CDFS.copy()
    bad[0, 3] = 65535
    _tables_error(cdfs=bad, match=r"cdfs row 0: last entry cdf\[3\] = 65535, must be 2\*\*precision"
                  r" = 65536")
    _tables_error(precision=15, match=r"cdfs row 0: last entry cdf\[3\] = 65536, must be "
                  r"2\*\*precision = 32768")
    # A row whose valid part ends early (length 3 stops at 30000).
    _tables_error(lengths=[3, 2], match=r"cdfs row 0: last entry cdf\[2\] = 30000")


def test_cdf_row_not_increasing_names_row_and_position():
    bad = np.array([[0, 8, 8], [0, 7, 7]], np.int32)
    _tables_error(cdfs=bad, lengths=[2, 3], offsets=[0, 0], precision=3,
                  match=r"cdfs row 1: cdf\[2\] = 7 is not greater than cdf\[1\] = 7")
    bad = np.array([[0, 10, 10, 65536]], np.int32)  # a zero-probability bin
    _tables_error(cdfs=bad, lengths=[4], offsets=[0],
                  match=r"cdfs row 0: cdf\[2\] = 10 is not greater than cdf\[1\] = 10 "
                  r"\(every bin needs a probability > 0\)")
    bad = np.array([[0, 40000, 30000, 65536]], np.int32)  # decreasing
    _tables_error(cdfs=bad, lengths=[4], offsets=[0],
                  match=r"cdfs row 0: cdf\[2\] = 30000 is not greater than cdf\[1\] = 40000")


def test_entries_past_the_length_are_not_validated():
    """Padding may hold anything (CompressAI pads with zeros)."""
    cdfs = np.array([[0, 1, 2, -5, 99], [0, 2, 0, 0, 0]], np.int32)
    ct = rc.CdfTables(cdfs, [3, 2], [0, 0], 1)
    np.testing.assert_array_equal(ct.decode(ct.encode([0, 3], [0, 1]), [0, 1]), [0, 3])


@pytest.mark.parametrize("length,match", [
    (1, r"cdf_lengths\[1\] = 1 is outside \[2, 4\]"),
    (0, r"cdf_lengths\[1\] = 0 is outside \[2, 4\]"),
    (-3, r"cdf_lengths\[1\] = -3 is outside \[2, 4\]"),
    (5, r"cdf_lengths\[1\] = 5 is outside \[2, 4\] \(2 to the number of columns of cdfs\)"),
    (INT32_MAX, r"cdf_lengths\[1\] = 2147483647 is outside \[2, 4\]"),
])
def test_cdf_lengths_out_of_range(length, match):
    _tables_error(lengths=[4, length], match=match)


def test_no_columns():
    _tables_error(cdfs=np.zeros((2, 0), np.int32),
                  match=r"cdf_lengths\[0\] = 4 is outside \[2, 0\]")


def test_lengths_and_offsets_count_mismatch():
    _tables_error(lengths=[4], match="cdf_lengths has 1 entries but cdfs has 2 rows")
    _tables_error(lengths=[4, 2, 2], match="cdf_lengths has 3 entries but cdfs has 2 rows")
    _tables_error(offsets=[0], match="offsets has 1 entries but cdfs has 2 rows")
    _tables_error(offsets=[0, 0, 0], match="offsets has 3 entries but cdfs has 2 rows")


@pytest.mark.parametrize("precision", [0, 17, -1, 32, 64, 2**31, 2**40])
def test_precision_out_of_range(precision):
    _tables_error(precision=precision, match=rf"precision must be in \[1, 16\], got {precision}")


def test_numpy_integer_precision_is_accepted():
    assert rc.CdfTables(*TABLES[:3], np.int64(16)).precision == 16
    assert rc.CdfTables(np.array([[0, 1, 2]]), [3], [0], np.uint8(1)).precision == 1


# ---------------------------------------------------------------------------------------------
# Indexes, threads, batch arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 2, 3, INT32_MAX, INT32_MIN])
def test_indexes_out_of_range(ct, blob, bad):
    idx = IDX.copy()
    idx[3] = bad
    match = rf"indexes\[3\] = {bad} is outside \[0, 2\) \(the rows of cdfs\)"
    with pytest.raises(ValueError, match=match):
        ct.encode(SYMS, idx)
    with pytest.raises(ValueError, match=match):
        ct.decode(blob, idx)
    with pytest.raises(ValueError, match=match):
        ct.encode_batch(np.stack([SYMS, SYMS]), idx)
    with pytest.raises(ValueError, match=match):
        ct.decode_batch([blob, blob], idx)
    per_stream = np.stack([IDX, idx])
    with pytest.raises(ValueError, match=rf"indexes\[8\] = {bad} is outside \[0, 2\)"):
        ct.encode_batch(np.stack([SYMS, SYMS]), per_stream)
    with pytest.raises(ValueError, match=rf"indexes\[8\] = {bad} is outside \[0, 2\)"):
        ct.decode_batch([blob, blob], per_stream)


def test_indexes_with_no_tables():
    ct = rc.CdfTables(np.zeros((0, 0), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    assert ct.num_tables == 0
    assert len(ct.encode([], [])) == rc.STREAM_OVERHEAD_BYTES
    assert ct.decode(ct.encode([], []), []).shape == (0,)
    with pytest.raises(ValueError, match=r"indexes\[0\] = 0 is outside \[0, 0\)"):
        ct.encode([1], [0])


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True, False, 2.0])
def test_bad_threads(ct, blob, threads):
    match = "threads must be a positive integer or None, got " + repr(threads).replace(".", r"\.")
    with pytest.raises(ValueError, match=match):
        ct.encode_batch(SYMS[None], IDX, threads=threads)
    with pytest.raises(ValueError, match=match):
        ct.decode_batch([blob], IDX, threads=threads)
    with pytest.raises(ValueError, match=match):
        rc.encode_batch(SYMS[None], IDX, *TABLES, threads=threads)
    with pytest.raises(ValueError, match=match):
        rc.decode_batch([blob], IDX, *TABLES, threads=threads)


def test_numpy_integer_threads_are_accepted(ct, blob):
    assert ct.encode_batch(SYMS[None], IDX, threads=np.int32(2)) == [blob]
    np.testing.assert_array_equal(ct.decode_batch([blob], IDX, threads=np.uint8(3)), SYMS[None])


@pytest.mark.parametrize("threads", [2**31, np.int64(2**40)])
def test_huge_thread_counts_are_capped(ct, blob, threads):
    """More threads than the machine can start is not an error (nor a crash): the pool is
    capped, and when the system refuses a thread the ones already running do the work."""
    assert ct.encode_batch(np.stack([SYMS] * 3), IDX, threads=threads) == [blob] * 3
    assert (ct.decode_batch([blob] * 3, IDX, threads=threads) == SYMS).all()


_FEW_THREADS = """
import numpy as np
from fastcodec import rangecoder as rc
tables = rc.CdfTables([[0, 20000, 60000, 65536]], [4], [-1])
symbols = np.arange(1100 * 4, dtype=np.int32).reshape(1100, 4) % 3 - 1
streams = tables.encode_batch(symbols, np.zeros(4, np.int32), threads=1024)
assert (tables.decode_batch(streams, np.zeros(4, np.int32), threads=1024) == symbols).all()
print("ok", len(streams))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_AS")
def test_a_refused_thread_is_not_a_crash():
    """1,024 threads need ~8 GB of stack address space; under a 3 GB limit most cannot start.
    The coder carries on with those it has instead of aborting the process."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    run = subprocess.run([sys.executable, "-c", _FEW_THREADS], capture_output=True, text=True,
                         preexec_fn=limit, timeout=300, cwd=tempfile.gettempdir())
    assert run.returncode == 0 and run.stdout.split() == ["ok", "1100"], run.stderr[-2000:]


def test_encode_batch_bad_indexes_shape(ct):
    with pytest.raises(ValueError, match=r"indexes must have shape \(5,\) \(shared\) or \(2, 5\) "
                       r"\(per stream\), got \(4,\)"):
        ct.encode_batch(np.stack([SYMS, SYMS]), IDX[:4])
    with pytest.raises(ValueError, match=r"got \(3, 5\)"):
        ct.encode_batch(np.stack([SYMS, SYMS]), np.stack([IDX] * 3))


def test_encode_batch_needs_a_batch_dimension(ct):
    with pytest.raises(ValueError, match="symbols must have a leading batch dimension"):
        ct.encode_batch(np.int32(3), np.int32(0))


def test_decode_batch_bad_indexes_shape(ct, blob):
    with pytest.raises(ValueError, match=r"per-stream indexes need a leading dimension of 2, got "
                       r"\(3, 5\)"):
        ct.decode_batch([blob, blob], np.stack([IDX] * 3), shared=False)
    with pytest.raises(ValueError, match="per-stream indexes need a leading dimension of 2"):
        ct.decode_batch([blob, blob], IDX, shared=False)


def test_decode_batch_single_bytes_object(ct, blob):
    for single in (blob, bytearray(blob), memoryview(blob)):
        with pytest.raises(ValueError, match="streams must be a list of bytes objects, not a "
                           "single bytes object"):
            ct.decode_batch(single, IDX)
        with pytest.raises(ValueError, match="not a single bytes object"):
            rc.decode_batch(single, IDX, *TABLES)


@pytest.mark.parametrize("item,name", [("text", "str"), (None, "NoneType"), (7, "int"),
                                       (np.frombuffer(b"\0" * 32, np.uint8), "ndarray"),
                                       ([1, 2], "list")])
def test_decode_batch_non_bytes_element(ct, blob, item, name):
    with pytest.raises(ValueError, match=rf"streams\[1\] must be bytes, got {name}"):
        ct.decode_batch([blob, item, blob], IDX)


def test_decode_non_bytes_data(ct):
    for data, name in (("text", "str"), (None, "NoneType"), ([0] * 32, "list"), (5, "int")):
        with pytest.raises(ValueError, match=f"data must be bytes, got {name}"):
            ct.decode(data, IDX)


# ---------------------------------------------------------------------------------------------
# Corrupt streams
# ---------------------------------------------------------------------------------------------


def _decode_outcome(ct, data, idx):
    """'ok' (right shape and dtype) or 'error' (ValueError with a message); anything else
    fails the test."""
    try:
        out = ct.decode(data, idx)
    except ValueError as exc:
        assert str(exc), "empty error message"
        return "error"
    assert isinstance(out, np.ndarray) and out.dtype == np.int32
    assert out.shape == np.shape(idx)
    return "ok"


@pytest.fixture(scope="module")
def small_stream():
    """A small Laplace stream with words beyond the coder state, and an escape."""
    tables, symbols, indexes = laplace_workload(shape=(1, 192, 1, 1), seed=21)
    ct = rc.CdfTables(*tables.args())
    sym = symbols.reshape(-1)[:150].copy()
    idx = indexes.reshape(-1)[:150].copy()
    sym[37] = 100_000  # an escape in lane 1
    data = ct.encode(sym, idx)
    assert len(data) > rc.STREAM_OVERHEAD_BYTES + 16  # some words besides the states
    np.testing.assert_array_equal(ct.decode(data, idx), sym)
    return ct, data, sym, idx


def test_empty_and_short_streams(small_stream):
    ct, _, _, idx = small_stream
    with pytest.raises(ValueError, match="stream is 0 bytes, shorter than the 32-byte coder state"):
        ct.decode(b"", idx)
    with pytest.raises(ValueError, match="stream is 0 bytes"):
        ct.decode(b"", idx[:0])  # even with nothing to decode
    with pytest.raises(ValueError, match="stream is 31 bytes"):
        ct.decode(b"\x01" * 31, idx)


def test_every_truncation_is_caught(small_stream):
    ct, data, _, idx = small_stream
    for k in range(len(data)):
        with pytest.raises(ValueError, match="truncated|corrupt"):
            ct.decode(data[:k], idx)
        # Dropping leading bytes instead of trailing ones.
        with pytest.raises(ValueError, match="truncated|corrupt"):
            ct.decode(data[len(data) - k:], idx)


@pytest.mark.parametrize("extra", [b"\0", b"\0\0\0\0", b"\x01\0\0\0", b"\xff" * 8, b"\0" * 32])
def test_appended_bytes_are_caught(small_stream, extra):
    ct, data, _, idx = small_stream
    with pytest.raises(ValueError, match="truncated|corrupt"):
        ct.decode(data + extra, idx)
    with pytest.raises(ValueError, match="truncated|corrupt"):
        ct.decode(extra + data, idx)


def test_bit_flips_are_caught(small_stream):
    ct, data, sym, idx = small_stream
    caught = 0
    total = len(data) * 8
    for bit in range(total):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            out = ct.decode(bytes(bad), idx)
        except ValueError as exc:
            assert "corrupt" in str(exc)
            caught += 1
        else:
            assert out.shape == idx.shape and out.dtype == np.int32
    assert caught >= 0.95 * total, f"only {caught} of {total} single-bit flips detected"


def test_bit_flips_in_a_stream_of_only_coder_state():
    """A stream with no words (every bit lives in the final states)."""
    ct = rc.CdfTables(*TABLES)
    data = ct.encode(SYMS[:3], IDX[:3])
    assert len(data) == rc.STREAM_OVERHEAD_BYTES
    caught = 0
    for bit in range(len(data) * 8):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        caught += _decode_outcome(ct, bytes(bad), IDX[:3]) == "error"
    assert caught >= 0.95 * len(data) * 8


def test_wrong_index_count(small_stream):
    ct, data, _, idx = small_stream
    for n in (0, 1, len(idx) - 1, len(idx) - 4, len(idx) + 1, len(idx) + 4, 3 * len(idx)):
        with pytest.raises(ValueError, match="corrupt or truncated stream"):
            ct.decode(data, np.resize(idx, n))


def test_wrong_indexes_same_count(small_stream):
    ct, data, _, idx = small_stream
    errors = 0
    for shift in range(1, 21):
        errors += _decode_outcome(ct, data, (idx + shift) % ct.num_tables) == "error"
    assert errors >= 19


def test_wrong_tables(small_stream):
    """Other tables (other precisions, extreme offsets, escape-only rows) never crash."""
    _, data, _, idx = small_stream
    rng = np.random.default_rng(3)
    outcomes = []
    for trial in range(40):
        precision = int(rng.integers(1, 17))
        rows = []
        for _ in range(192):
            n = int(rng.integers(0, min(1 << precision, 40)))
            interior = np.sort(rng.choice(np.arange(1, 1 << precision), size=n, replace=False)) \
                if n else np.zeros(0, np.int64)
            rows.append([0, *interior.tolist(), 1 << precision])
        offsets = rng.choice([INT32_MIN, INT32_MAX, INT32_MAX - 3, -5, 0], size=192)
        other = rc.CdfTables(*make_tables(rows, offsets, precision).args())
        outcomes.append(_decode_outcome(other, data, idx))
    assert outcomes.count("error") >= 38


def test_random_bytes_never_crash_or_hang(tmp_path):
    """Random streams (valid-looking coder states included), in a subprocess: a crash or a hang
    shows up as such instead of killing the test session."""
    script = textwrap.dedent(
        """
        import numpy as np
        from fastcodec import rangecoder as rc

        rng = np.random.default_rng(12345)
        I32 = np.iinfo(np.int32)
        results = {"ok": 0, "error": 0}
        tables = []
        for precision in (1, 2, 7, 12, 16):
            total = 1 << precision
            rows = [[0, total], [0, total // 2, total] if total > 1 else [0, total],
                    [0, *range(1, min(total, 300)), total]]
            width = max(len(r) for r in rows)
            cdfs = np.array([r + [r[-1]] * (width - len(r)) for r in rows], np.int32)
            for offsets in ([0, -3, -100], [I32.max, I32.max - 1, I32.max - 200],
                            [I32.min, I32.min, I32.min + 5]):
                tables.append(rc.CdfTables(cdfs, [len(r) for r in rows], offsets, precision))
        for trial in range(20000):
            ct = tables[trial % len(tables)]
            nwords = int(rng.integers(0, 12))
            data = bytearray(rng.integers(0, 256, size=4 * nwords + 32, dtype=np.uint8).tobytes())
            if trial % 3:  # states in [2^31, 2^63): gets past the state check
                for k in range(4):
                    state = int(rng.integers(2**31, 2**63, dtype=np.uint64))
                    data[4 * nwords + 8 * k: 4 * nwords + 8 * k + 8] = state.to_bytes(8, "little")
            if trial % 7 == 0:
                data = data[: int(rng.integers(0, len(data) + 1))]
            count = int(rng.integers(0, 40))
            idx = rng.integers(0, 3, size=count).astype(np.int32)
            try:
                out = ct.decode(bytes(data), idx)
            except ValueError as exc:
                assert str(exc)
                results["error"] += 1
            else:
                assert out.shape == (count,) and out.dtype == np.int32
                results["ok"] += 1
            if trial % 50 == 0:
                try:
                    ct.decode_batch([bytes(data)] * 3, idx, threads=2)
                except ValueError as exc:
                    assert str(exc).startswith("stream 0: "), str(exc)
        print(results["ok"], results["error"])
        """
    )
    # Run outside the checkout, so the installed package is imported, not the source tree.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, f"decoder crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    ok, errors = map(int, proc.stdout.split())
    assert ok + errors == 20000
    assert errors >= 19000  # random bytes almost never pass the end-of-stream check


# ---------------------------------------------------------------------------------------------
# Batch errors name the stream
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 3, None])
def test_batch_decode_names_the_failing_stream(threads):
    tables, symbols, indexes = laplace_workload(shape=(6, 192, 2, 2), seed=4)
    ct = rc.CdfTables(*tables.args())
    streams = ct.encode_batch(symbols, indexes, threads=threads)
    bad = list(streams)
    bad[3] = bad[3][:-4]
    with pytest.raises(ValueError, match=r"^stream 3: .*(truncated|corrupt)"):
        ct.decode_batch(bad, indexes, threads=threads)
    # Several bad streams: the lowest is reported, whatever the thread count.
    bad[5] = b""
    flipped = bytearray(streams[4])
    flipped[0] ^= 0x10
    bad[4] = bytes(flipped)
    with pytest.raises(ValueError, match=r"^stream 3: "):
        ct.decode_batch(bad, indexes, threads=threads)
    bad[3] = streams[3]
    with pytest.raises(ValueError, match=r"^stream 4: corrupt"):
        ct.decode_batch(bad, indexes, threads=threads)
    bad[4] = streams[4]
    with pytest.raises(ValueError, match=r"^stream 5: stream is 0 bytes"):
        rc.decode_batch(bad, indexes, *tables.args(), threads=threads)
    # Per-stream indexes with the wrong row for stream 2.
    per = np.broadcast_to(indexes, symbols.shape).copy()
    per[2] = (per[2] + 1) % ct.num_tables
    with pytest.raises(ValueError, match=r"^stream 2: corrupt"):
        ct.decode_batch(streams, per, threads=threads)
    np.testing.assert_array_equal(ct.decode_batch(streams, indexes, threads=threads), symbols)
