"""The CompressAI-compatible coder classes, fed exactly what CompressAI's entropy models pass.

The tables are built here the way ``EntropyBottleneck.update()`` and
``GaussianConditional.update_scale_table()`` build theirs (own code; compressai is not a test
dependency): per channel a pmf over an integer support, the tail mass appended as the escape bin,
``pmf_to_quantized_cdf`` at precision 16, rows written into a zero-padded ``[C, max_len + 2]``
table, ``cdf_sizes`` = valid entries, ``offsets`` = negative support starts; and everything goes
in as Python lists (``tensor.tolist()``), as ``compress()`` / ``decompress()`` do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _fastcodec_test_helpers import INT32_MAX, INT32_MIN, Tables, ideal_bits
from fastcodec import rangecoder as rc
from fastcodec.compat import compressai as compat
from fastcodec.compat.compressai import RangeDecoder, RangeEncoder, RansDecoder, RansEncoder
from fastcodec.entropy.cdf import pmf_to_quantized_cdf

PRECISION = 16


def _logistic_cdf(x, loc, scale):
    return 1.0 / (1.0 + np.exp(-(x - loc) / scale))


def entropy_bottleneck_tables(channels: int = 24, seed: int = 0):
    """``(quantized_cdf [C, max_len + 2] torch.int32, cdf_length [C], offset [C])`` built like
    ``EntropyBottleneck.update()``: a per-channel density (here logistic) with its median and
    the quantiles bounding the support; pmf over the support, tail mass as the escape bin."""
    rng = np.random.default_rng(seed)
    medians = rng.uniform(-2, 2, size=channels)
    scales = np.exp(rng.uniform(math.log(0.2), math.log(6.0), size=channels))
    tail = 1e-9
    lower_q = medians + scales * math.log(tail / 2 / (1 - tail / 2))  # quantile tail/2
    upper_q = medians - scales * math.log(tail / 2 / (1 - tail / 2))
    minima = np.maximum(np.ceil(medians - lower_q), 0).astype(np.int64)
    maxima = np.maximum(np.ceil(upper_q - medians), 0).astype(np.int64)
    offset = -minima
    pmf_start = medians - minima
    pmf_length = maxima + minima + 1
    max_length = int(pmf_length.max())
    cdf = torch.zeros((channels, max_length + 2), dtype=torch.int32)
    for c in range(channels):
        samples = np.arange(pmf_length[c]) + pmf_start[c]
        upper = _logistic_cdf(samples + 0.5, medians[c], scales[c])
        lower = _logistic_cdf(samples - 0.5, medians[c], scales[c])
        pmf = upper - lower
        tail_mass = lower[0] + (1.0 - upper[-1])
        prob = np.append(pmf, tail_mass)
        row = pmf_to_quantized_cdf(prob, PRECISION)
        cdf[c, : row.size] = torch.from_numpy(row)
    cdf_length = torch.from_numpy(pmf_length + 2).int()
    return cdf, cdf_length, torch.from_numpy(offset).int(), medians, scales


def gaussian_conditional_tables(scale_table=None):
    """Like ``GaussianConditional.update_scale_table()``: one row per scale of a zero-mean
    discretized Gaussian, support ``[-m, m]``."""
    if scale_table is None:
        scale_table = np.exp(np.linspace(math.log(0.11), math.log(256), 64))
    from math import erf, sqrt

    def ncdf(x):
        return 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))

    # Standard normal quantile at tail/2 = 0.5e-9 (CompressAI's tail mass 1e-9), as
    # scipy.stats.norm.ppf would give.
    multiplier = 6.109410204869284
    pmf_center = np.ceil(scale_table * multiplier).astype(np.int64)
    pmf_length = 2 * pmf_center + 1
    max_length = int(pmf_length.max())
    cdf = torch.zeros((len(scale_table), max_length + 2), dtype=torch.int32)
    for i, s in enumerate(scale_table):
        values = np.arange(pmf_length[i]) - pmf_center[i]
        upper = ncdf((0.5 - np.abs(values)) / s)
        lower = ncdf((-0.5 - np.abs(values)) / s)
        pmf = upper - lower
        tail_mass = 2 * lower[0]
        row = pmf_to_quantized_cdf(np.append(pmf, tail_mass), PRECISION)
        cdf[i, : row.size] = torch.from_numpy(row)
    return cdf, torch.from_numpy(pmf_length + 2).int(), torch.from_numpy(-pmf_center).int()


@pytest.fixture(scope="module")
def bottleneck():
    return entropy_bottleneck_tables()


@pytest.fixture(scope="module")
def gaussian():
    return gaussian_conditional_tables()


def _bottleneck_symbols(medians, scales, shape=(2, 24, 6, 5), seed=1):
    """``EntropyBottleneck.compress``: symbols = round(x - median) per channel."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(
        rng.logistic(medians[None, :, None, None], scales[None, :, None, None], size=shape)
    )
    med = torch.from_numpy(medians).reshape(1, -1, 1, 1)
    symbols = torch.round(x - med).int()
    indexes = torch.arange(shape[1], dtype=torch.int32).reshape(1, -1, 1, 1).expand(shape)
    return symbols, indexes.contiguous()


def test_entropy_bottleneck_roundtrip_with_python_lists(bottleneck):
    cdf, cdf_length, offset, medians, scales = bottleneck
    symbols, indexes = _bottleneck_symbols(medians, scales)
    # Far outliers that only the escape bin can carry, as in a real model's latents.
    symbols[0, 3, 0, 0] = 10_000
    symbols[1, 5, 2, 1] = -7_777
    enc, dec = RangeEncoder(), RangeDecoder()
    strings = []
    for i in range(symbols.size(0)):
        sym_list = symbols[i].reshape(-1).int().tolist()
        idx_list = indexes[i].reshape(-1).int().tolist()
        rv = enc.encode_with_indexes(sym_list, idx_list, cdf.tolist(),
                                     cdf_length.reshape(-1).int().tolist(),
                                     offset.reshape(-1).int().tolist())
        assert isinstance(rv, bytes)
        strings.append(rv)
    for i, s in enumerate(strings):
        values = dec.decode_with_indexes(s, indexes[i].reshape(-1).int().tolist(), cdf.tolist(),
                                         cdf_length.reshape(-1).int().tolist(),
                                         offset.reshape(-1).int().tolist())
        assert isinstance(values, list) and all(type(v) is int for v in values)
        assert values == symbols[i].reshape(-1).tolist()
        # compressai: torch.Tensor(values).reshape(...)
        out = torch.Tensor(values).reshape(symbols[i].shape)
        assert torch.equal(out.int(), symbols[i])


def test_entropy_bottleneck_bytes_match_the_native_api(bottleneck):
    """The compat classes are the native coder with CompressAI's conventions: same bytes as
    ``rangecoder.encode`` at precision 16 with the same (zero-padded) tables."""
    cdf, cdf_length, offset, medians, scales = bottleneck
    symbols, indexes = _bottleneck_symbols(medians, scales, seed=5)
    sym, idx = symbols[0].reshape(-1).tolist(), indexes[0].reshape(-1).tolist()
    rv = RangeEncoder().encode_with_indexes(sym, idx, cdf.tolist(), cdf_length.tolist(),
                                            offset.tolist())
    native = rc.encode(np.array(sym), np.array(idx), cdf.numpy(), cdf_length.numpy(),
                       offset.numpy(), 16)
    assert rv == native
    # And the size is what the tables promise.
    tables = Tables(cdf.numpy(), cdf_length.numpy(), offset.numpy(), 16)
    ideal = ideal_bits(sym, idx, tables)
    assert 8 * (len(rv) - rc.STREAM_OVERHEAD_BYTES) <= ideal * (1 + 1e-4) + 45 * 2


def test_gaussian_conditional_roundtrip(gaussian):
    """``GaussianConditional.compress``: indexes from scales, symbols = round(x - means)."""
    cdf, cdf_length, offset = gaussian
    rng = np.random.default_rng(9)
    n = 3000
    idx = rng.integers(0, cdf.size(0), size=n)
    scale_table = np.exp(np.linspace(math.log(0.11), math.log(256), 64))
    symbols = np.rint(rng.normal(0, scale_table[idx])).astype(np.int64)
    symbols[:5] = [INT32_MAX, INT32_MIN, 0, 1_000_000, -1]
    enc, dec = RansEncoder(), RansDecoder()
    args = (cdf.tolist(), cdf_length.tolist(), offset.tolist())
    rv = enc.encode_with_indexes(symbols.tolist(), idx.tolist(), *args)
    values = dec.decode_with_indexes(rv, idx.tolist(), *args)
    assert values == symbols.tolist()


def test_aliases():
    assert RansEncoder is RangeEncoder and RansDecoder is RangeDecoder
    assert set(compat.__all__) == {"BufferedRansEncoder", "RangeDecoder", "RangeEncoder",
                                   "RansDecoder", "RansEncoder"}


def test_ragged_cdf_rows(bottleneck):
    """Rows of their own lengths (no padding) are accepted and code like the padded table."""
    cdf, cdf_length, offset, medians, scales = bottleneck
    ragged = [cdf[c, : int(cdf_length[c])].tolist() for c in range(cdf.size(0))]
    assert len({len(r) for r in ragged}) > 1
    symbols, indexes = _bottleneck_symbols(medians, scales, seed=3)
    sym, idx = symbols[1].reshape(-1).tolist(), indexes[1].reshape(-1).tolist()
    rv = RangeEncoder().encode_with_indexes(sym, idx, ragged, cdf_length.tolist(),
                                            offset.tolist())
    padded = RangeEncoder().encode_with_indexes(sym, idx, cdf.tolist(), cdf_length.tolist(),
                                                offset.tolist())
    assert rv == padded
    assert RangeDecoder().decode_with_indexes(rv, idx, ragged, cdf_length.tolist(),
                                              offset.tolist()) == sym
    # Mixed: ragged rows that also carry a bit of junk past their sizes.
    junk = [r + [123] * (c % 3) for c, r in enumerate(ragged)]
    assert RangeDecoder().decode_with_indexes(rv, idx, junk, cdf_length.tolist(),
                                              offset.tolist()) == sym


def test_torch_tensors_and_numpy_arrays(bottleneck):
    cdf, cdf_length, offset, medians, scales = bottleneck
    symbols, indexes = _bottleneck_symbols(medians, scales, seed=4)
    sym, idx = symbols[0].reshape(-1), indexes[0].reshape(-1)
    ref = RangeEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), cdf.tolist(),
                                             cdf_length.tolist(), offset.tolist())
    # Tensors straight in (int32 and int64), and numpy arrays.
    assert RangeEncoder().encode_with_indexes(sym, idx, cdf, cdf_length, offset) == ref
    assert RangeEncoder().encode_with_indexes(sym.long(), idx.long(), cdf.long(),
                                              cdf_length.long(), offset.long()) == ref
    assert RangeEncoder().encode_with_indexes(sym.numpy(), idx.numpy(), cdf.numpy(),
                                              cdf_length.numpy(), offset.numpy()) == ref
    assert RangeDecoder().decode_with_indexes(ref, idx, cdf, cdf_length, offset) == sym.tolist()
    # A list of row tensors (torch.unbind) works like a list of lists.
    rows = list(torch.unbind(cdf))
    assert RangeDecoder().decode_with_indexes(ref, idx.tolist(), rows, cdf_length.tolist(),
                                              offset.tolist()) == sym.tolist()


def test_empty_and_tiny_inputs(bottleneck):
    cdf, cdf_length, offset, _, _ = bottleneck
    args = (cdf.tolist(), cdf_length.tolist(), offset.tolist())
    for sym, idx in (([], []), ([0], [0]), ([5, -3], [1, 23]), ([1, 2, 3], [0, 0, 0])):
        rv = RangeEncoder().encode_with_indexes(sym, idx, *args)
        assert RangeDecoder().decode_with_indexes(rv, idx, *args) == sym


def test_errors_are_value_errors(bottleneck):
    cdf, cdf_length, offset, _, _ = bottleneck
    args = (cdf.tolist(), cdf_length.tolist(), offset.tolist())
    with pytest.raises(ValueError, match=r"indexes\[1\] = 24 is outside \[0, 24\)"):
        RangeEncoder().encode_with_indexes([0, 0], [0, 24], *args)
    with pytest.raises(ValueError, match="symbols has shape"):
        RangeEncoder().encode_with_indexes([0, 0, 0], [0, 1], *args)
    with pytest.raises(ValueError, match="corrupt|truncated"):
        RangeDecoder().decode_with_indexes(b"\x01" * 40, [0, 1], *args)
    bad = [row[:] for row in cdf.tolist()]
    bad[2][1] = 0
    with pytest.raises(ValueError, match=r"cdfs row 2: cdf\[1\] = 0 is not greater"):
        RangeEncoder().encode_with_indexes([0], [0], bad, cdf_length.tolist(), offset.tolist())
    ragged_float = [[0.0, 65536.0], [0.0, 1.0, 65536.0]]
    with pytest.raises(ValueError, match="integers"):
        RangeEncoder().encode_with_indexes([0], [0], ragged_float, [2, 3], [0, 0])
    with pytest.raises(ValueError, match="1-D rows"):
        RangeEncoder().encode_with_indexes([0], [0], [[[0, 65536]]], [2], [0])
    with pytest.raises(ValueError, match=r"cdf_lengths has 23 entries but cdfs has 24 rows"):
        RangeEncoder().encode_with_indexes([0], [0], cdf.tolist(), cdf_length.tolist()[:-1],
                                           offset.tolist())


def test_cdf_values_outside_int32_are_rejected():
    """Rectangular list tables go through the int32 range check."""
    with pytest.raises(ValueError, match="cdfs has values outside the int32 range"):
        RangeEncoder().encode_with_indexes([0], [0], [[0, 2**32 + 5, 65536]], [3], [0])


def test_ragged_cdf_values_outside_int32_are_rejected():
    with pytest.raises(ValueError, match="int32"):
        RangeEncoder().encode_with_indexes([0], [0], [[0, 2**32 + 5, 65536], [0, 65536]],
                                           [3, 2], [0, 0])


def _context_index(decoded: np.ndarray, c: int, h: int, w: int, rows: int) -> int:
    """A stand-in for a context model: the scale index of position (h, w) of channel c from the
    symbols already decoded (left and above), so the decoder only knows it once they are."""
    left = decoded[c, h, w - 1] if w else 0
    up = decoded[c, h - 1, w] if h else 0
    return int(min(rows - 1, 8 + 6 * (abs(int(left)) + abs(int(up))) + c))


@pytest.mark.parametrize("one_call", [False, True])
def test_autoregressive_flow_with_buffered_encoder_and_decode_stream(gaussian, one_call):
    """mbt2018 / cheng2020's ``_compress_ar`` / ``_decompress_ar``: the encoder buffers every
    position (one call per position, or the lists gathered into one call, as CompressAI does),
    the decoder works position by position, learning each scale index from what it decoded."""
    cdf, cdf_length, offset = gaussian
    args = (cdf.tolist(), cdf_length.tolist(), offset.tolist())
    rows = cdf.size(0)
    rng = np.random.default_rng(21)
    latent = rng.integers(-3, 4, size=(3, 5, 6))
    latent[1, 2, 3] = 40_000  # an escape in the middle
    enc = compat.BufferedRansEncoder()
    all_sym, all_idx = [], []
    for h in range(5):
        for w in range(6):
            idx = [_context_index(latent, c, h, w, rows) for c in range(3)]
            sym = latent[:, h, w].tolist()
            if one_call:
                all_sym += sym
                all_idx += idx
            else:
                assert enc.encode_with_indexes(sym, idx, *args) is None
    if one_call:
        enc.encode_with_indexes(all_sym, all_idx, *args)
    data = enc.flush()
    assert isinstance(data, bytes)
    dec = RansDecoder()
    dec.set_stream(data)
    decoded = np.zeros_like(latent)
    for h in range(5):
        for w in range(6):
            idx = [_context_index(decoded, c, h, w, rows) for c in range(3)]
            values = dec.decode_stream(idx, *args)
            assert all(type(v) is int for v in values)
            decoded[:, h, w] = values
    np.testing.assert_array_equal(decoded, latent)


def test_buffered_encoder_mixes_tables_and_decode_stream_checks_its_state(bottleneck, gaussian):
    """Pieces with different tables (hyperprior bottleneck, then Gaussian conditional) in one
    stream; decode_stream before set_stream and after a damaged stream raise ValueError."""
    eb = (bottleneck[0].tolist(), bottleneck[1].tolist(), bottleneck[2].tolist())
    gc = (gaussian[0].tolist(), gaussian[1].tolist(), gaussian[2].tolist())
    enc = compat.BufferedRansEncoder()
    enc.encode_with_indexes([1, -2, 0], [0, 5, 23], *eb)
    enc.encode_with_indexes([7, 0], [30, 2], *gc)
    enc.encode_with_indexes([3], [4], *eb)
    data = enc.flush()
    dec = RangeDecoder()
    with pytest.raises(ValueError, match="call set_stream"):
        dec.decode_stream([0], *eb)
    dec.set_stream(data)
    assert dec.decode_stream([0, 5, 23], *eb) == [1, -2, 0]
    assert dec.decode_stream([30, 2], *gc) == [7, 0]
    assert dec.decode_stream([4], *eb) == [3]
    dec.set_stream(data[:-36] + data[-32:])  # one word short
    with pytest.raises(ValueError, match="corrupt|truncated"):
        for _ in range(3):
            dec.decode_stream([0, 5, 23], *eb)
            dec.decode_stream([30, 2], *gc)
    with pytest.raises(ValueError, match="indexes"):
        enc.encode_with_indexes([0], [24], *eb)
