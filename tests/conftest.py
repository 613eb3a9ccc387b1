"""Shared test helpers: reference code lengths and random-table strategies for the range-coder
tests, the one-torch-thread fixture, tiny synthetic training images and the loader of the
``training/`` scripts.

Test modules import these with ``from _fastcodec_test_helpers import ...``: this conftest registers
itself under that name, because the bare name ``conftest`` is ambiguous when pytest also loads
another directory's conftest (``benches/conftest.py``) in the same session.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass
class Tables:
    """CDF tables in the coder's convention (``cdfs`` may carry junk past ``cdf_lengths``)."""

    cdfs: np.ndarray  # int32 [T, W]
    lengths: np.ndarray  # int32 [T]
    offsets: np.ndarray  # int32 [T]
    precision: int

    @property
    def num_tables(self) -> int:
        return int(self.cdfs.shape[0])

    def args(self):
        """Positional arguments after ``symbols/data, indexes`` of the module functions."""
        return self.cdfs, self.lengths, self.offsets, self.precision

    def row(self, t: int) -> np.ndarray:
        return self.cdfs[t, : int(self.lengths[t])].astype(np.int64)


def make_tables(rows, offsets, precision: int, pad_value: int | None = None) -> Tables:
    """Packs CDF rows (lists or arrays) into a Tables; ``pad_value`` fills the unused entries
    (by default the last entry is repeated)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    width = int(lengths.max()) if len(rows) else 0
    cdfs = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        cdfs[i, : len(r)] = r
        cdfs[i, len(r) :] = r[-1] if pad_value is None else pad_value
    return Tables(cdfs, lengths, np.asarray(offsets, dtype=np.int32).reshape(-1), precision)


def cdf_from_freqs(freqs) -> list[int]:
    out = [0]
    for f in freqs:
        out.append(out[-1] + int(f))
    return out


def bin_of(symbols, indexes, tables: Tables) -> np.ndarray:
    """The bin each symbol is coded with (the escape bin ``length - 2`` for values outside)."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    t = np.asarray(indexes, dtype=np.int64).reshape(-1)
    v = s - tables.offsets.astype(np.int64)[t]
    esc = tables.lengths.astype(np.int64)[t] - 2
    return np.where((v >= 0) & (v < esc), v, esc)


def escape_mask(symbols, indexes, tables: Tables) -> np.ndarray:
    """True where a symbol is outside its row's regular range (coded as an escape)."""
    t = np.asarray(indexes, dtype=np.int64).reshape(-1)
    return bin_of(symbols, indexes, tables) == tables.lengths.astype(np.int64)[t] - 2


def ideal_bits(symbols, indexes, tables: Tables) -> float:
    """Cross-entropy in bits of ``symbols`` under their rows: ``sum -log2(freq / 2**precision)``
    of the bin each symbol uses (escaped values count only their escape bin)."""
    t = np.asarray(indexes, dtype=np.int64).reshape(-1)
    if t.size == 0:
        return 0.0
    b = bin_of(symbols, indexes, tables)
    cdfs = tables.cdfs.astype(np.int64)
    freq = cdfs[t, b + 1] - cdfs[t, b]
    assert np.all(freq >= 1)
    return float(np.sum(tables.precision - np.log2(freq.astype(np.float64))))


def payload_bits(stream: bytes, overhead: int) -> int:
    """Coded bits of a stream, without the fixed per-stream coder state."""
    return 8 * (len(stream) - overhead)


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def laplace_workload(shape=(2, 192, 16, 24), seed: int = 1234, channels: int = 192):
    """The standard latent workload: per-channel Laplace scales log-uniform in [0.1, 20],
    symbols = rounded Laplace samples. Returns ``(tables, symbols int32 shape, indexes int32
    shape[1:])``; the channel axis is ``shape[1]``."""
    from fastcodec.entropy import laplace_cdf_tables

    assert shape[1] == channels
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(math.log(0.1), math.log(20.0), size=channels))
    cdfs, lengths, offsets = laplace_cdf_tables(scales)
    tables = Tables(cdfs, lengths, offsets, 16)
    per_elem = scales.reshape((1, channels) + (1,) * (len(shape) - 2))
    symbols = np.rint(rng.laplace(0.0, 1.0, size=shape) * per_elem).astype(np.int32)
    indexes = np.broadcast_to(
        np.arange(channels, dtype=np.int32).reshape((channels,) + (1,) * (len(shape) - 2)),
        shape[1:],
    ).copy()
    return tables, symbols, indexes


@pytest.fixture(scope="session")
def laplace():
    return laplace_workload()


# --------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------

EXTREME_OFFSETS = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX]


@st.composite
def cdf_rows(draw, precision: int, max_length: int = 24) -> list[int]:
    """One valid CDF row for ``precision``: 2 (escape only) to ``max_length`` entries,
    sometimes as many as the precision allows (every bin of frequency 1)."""
    total = 1 << precision
    longest = min(total + 1, max_length)
    if precision <= 4 and draw(st.integers(0, 5)) == 0:
        length = total + 1  # every bin has frequency 1
    else:
        length = draw(st.integers(2, longest))
    if length == total + 1:
        interior = list(range(1, total))
    elif total - 1 <= 64:  # dense: pick a random subset through a permutation
        interior = draw(st.permutations(list(range(1, total))))[: length - 2]
    else:  # sparse: distinct random points
        interior = draw(
            st.lists(st.integers(1, total - 1), min_size=length - 2, max_size=length - 2,
                     unique=True)
        )
    return [0, *sorted(interior), total]


@st.composite
def random_tables(draw, max_rows: int = 5, max_length: int = 24, precision=None) -> Tables:
    """Random valid tables: precision 1..16, 1..max_rows rows of random lengths (length 2 =
    escape-only rows), offsets anywhere in int32 (extremes included), junk past the lengths."""
    p = draw(st.sampled_from(list(range(1, 17)))) if precision is None else precision
    num_rows = draw(st.integers(1, max_rows))
    rows = [draw(cdf_rows(p, max_length)) for _ in range(num_rows)]
    offsets = [
        draw(st.one_of(st.integers(-40, 40), st.sampled_from(EXTREME_OFFSETS),
                       st.integers(INT32_MIN, INT32_MAX)))
        for _ in range(num_rows)
    ]
    pad = draw(st.one_of(st.none(), st.integers(INT32_MIN, INT32_MAX)))
    return make_tables(rows, offsets, p, pad_value=pad)


def _clip32(v: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, v))


@st.composite
def symbol_for_row(draw, tables: Tables, t: int) -> int:
    """A symbol for row ``t``: mostly regular values, plus escapes just below/above the row's
    range, far away, and at the int32 extremes."""
    off = int(tables.offsets[t])
    nreg = int(tables.lengths[t]) - 2
    kind = draw(st.integers(0, 9))
    if nreg > 0 and kind <= 4:
        return _clip32(off + draw(st.integers(0, nreg - 1)))
    if kind == 5:
        return _clip32(off - draw(st.integers(1, 3)))
    if kind == 6:
        return _clip32(off + nreg + draw(st.integers(0, 2)))
    if kind == 7:
        return draw(st.sampled_from([INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1, 0, -1]))
    return draw(st.integers(INT32_MIN, INT32_MAX))


# Hypothesis favours the first branch and small values: keep 0 rare but present.
COUNTS = st.one_of(st.integers(1, 64), st.sampled_from([0, 1, 2, 3, 5, 8, 9]))


@st.composite
def coding_problem(draw, max_rows: int = 5, max_length: int = 24, count=None):
    """``(tables, symbols int32 [n], indexes int32 [n])`` with any count ``n`` (0 included)."""
    tables = draw(random_tables(max_rows=max_rows, max_length=max_length))
    n = draw(COUNTS) if count is None else count
    indexes = [draw(st.integers(0, tables.num_tables - 1)) for _ in range(n)]
    symbols = [draw(symbol_for_row(tables, t)) for t in indexes]
    return tables, np.array(symbols, dtype=np.int32), np.array(indexes, dtype=np.int32)


@pytest.fixture
def one_torch_thread():
    """Runs a test with one torch thread: the test models are tiny, and one thread is faster and
    immune to spin-waiting on busy cores. Use ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def training_script(name: str):
    """``training/<name>.py`` of the checkout, imported as a module (the scripts there are not
    part of the package); the test is skipped when the tree has no such file."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "training" / f"{name}.py"
    if not path.is_file():  # an installed package without the checkout's training/
        pytest.skip(f"training/{name}.py is not in this tree")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Importable by the test modules whatever name pytest gave this module (see the docstring).
# --------------------------------------------------------------------------------------------
# Image files Pillow cannot write
# --------------------------------------------------------------------------------------------


def png_rgb16(path: Path, samples: np.ndarray) -> Path:
    """A 16-bit RGB PNG (Pillow cannot write one) from uint16 HxWx3 ``samples``."""
    import struct
    import zlib

    h, w, _ = samples.shape
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2,
                                                                      0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


sys.modules["_fastcodec_test_helpers"] = sys.modules[__name__]


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """Eight 48x48 smooth synthetic photos (gradients, edges, a little noise) as PNGs."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    for i in range(8):
        f = rng.uniform(1, 4, size=3)
        img = np.stack(
            [0.5 + 0.4 * np.sin(f[c] * (xx + rng.uniform()) * 3 + c * yy * f[c]) for c in range(3)],
            axis=-1,
        )
        img[rng.integers(8, 40) :, :] *= rng.uniform(0.5, 1.0)  # an edge
        img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder
