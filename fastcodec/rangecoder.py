"""Range coding of integer symbols against integer CDF tables (native, interleaved rANS).

Table conventions are CompressAI's, so tables built for one work in the other:

* ``cdfs``: int32 ``[num_tables, max_length]``. Row ``t`` holds ``cdf_lengths[t]`` valid entries
  that start at 0, end at ``2**precision`` and strictly increase (every bin has probability > 0).
  Entries past ``cdf_lengths[t]`` are ignored.
* Symbol ``s`` coded with table ``t = indexes[i]``: ``v = s - offsets[t]``. If
  ``0 <= v < cdf_lengths[t] - 2`` it is coded with the table; otherwise the last bin (the escape
  bin) is coded and the value follows in a bypass code, so every int32 symbol roundtrips.

The coder is rANS (the range variant of asymmetric numeral systems) with four interleaved 64-bit
states per stream and 32-bit renormalisation; all arithmetic is integer, so the bytes and the
decoded symbols are identical on every machine. Each stream costs 32 bytes of final coder state on
top of the coded bits. The GIL is released while coding, and the batch functions code independent
streams on a thread pool (the bytes never depend on the thread count).

Inputs may be any integer arrays (or nested lists) whose values fit in int32; C-contiguous int32
arrays are used without a copy. Malformed tables and arguments raise ``ValueError`` saying what
is wrong. Decoding never crashes or reads out of bounds, whatever the bytes; at the end of a
stream every coder state must be back where the encoder started and every word consumed, so
truncation, appended bytes, wrong tables and damage to table-coded symbols raise ``ValueError``.
Damage to the raw bits of escaped values changes those values without disturbing the coder
state and is not detected here: protect streams with a checksum (the ``.fcc`` container does).

:class:`PieceEncoder` / :class:`PieceDecoder` code one stream in pieces, each with its own
tables: what autoregressive context models need, whose next tables depend on the symbols
decoded so far.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from fastcodec import _rangecoder

__all__ = [
    "CdfTables",
    "PieceDecoder",
    "PieceEncoder",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "STREAM_OVERHEAD_BYTES",
]

#: Bytes each stream carries on top of its coded bits (the final coder states).
STREAM_OVERHEAD_BYTES: int = _rangecoder.STREAM_OVERHEAD_BYTES

_INT32_MIN, _INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max


def _as_int32(name: str, value, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a C-contiguous int32 array (no copy when it already is one)."""
    if isinstance(value, np.ndarray) and value.dtype == np.int32:
        arr = np.asarray(value, order="C")  # no copy when already C-contiguous; keeps 0-D
    else:
        try:
            arr = np.asarray(value)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular integer array: {exc}") from None
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.integer) or (arr.size == 0 and arr.dtype == np.float64)
        ):
            raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
            raise ValueError(f"{name} has values outside the int32 range")
        arr = np.asarray(arr, dtype=np.int32, order="C")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    return arr


_MAX_THREADS = 1024


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return 0  # the native side uses every hardware thread
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return min(int(threads), _MAX_THREADS)  # never more threads than streams anyway


def _as_bytes(name: str, data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ValueError(f"{name} must be bytes, got {type(data).__name__}")


class CdfTables:
    """Validated CDF tables, prepared once and reusable for any number of calls and threads.

    Args:
        cdfs: int ``[num_tables, max_length]`` quantized CDFs (see the module docstring).
        cdf_lengths: int ``[num_tables]`` valid entries per row (bins + 1, escape bin included).
        offsets: int ``[num_tables]`` symbol value of each row's first bin.
        precision: bits of probability resolution, 1 to 16 (rows end at ``2**precision``).
    """

    def __init__(self, cdfs, cdf_lengths, offsets, precision: int = 16):
        if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
            raise ValueError(f"precision must be an integer, got {precision!r}")
        if not 1 <= precision <= 16:
            raise ValueError(f"precision must be in [1, 16], got {precision}")
        # copies kept for PieceEncoder, which merges the tables of several pieces into one
        self._arrays = tuple(np.array(a, copy=True) for a in (
            _as_int32("cdfs", cdfs, 2), _as_int32("cdf_lengths", cdf_lengths, 1),
            _as_int32("offsets", offsets, 1)))
        self._native = _rangecoder.Tables(*self._arrays, int(precision))

    @property
    def num_tables(self) -> int:
        return self._native.num_rows

    @property
    def precision(self) -> int:
        return self._native.precision

    def encode(self, symbols, indexes) -> bytes:
        """Codes ``symbols`` (any shape) with tables ``indexes`` (same shape) into one stream."""
        sym = _as_int32("symbols", symbols)
        idx = _as_int32("indexes", indexes)
        if sym.shape != idx.shape:
            raise ValueError(f"symbols has shape {sym.shape} but indexes has shape {idx.shape}")
        return self._native.encode(sym.reshape(-1), idx.reshape(-1))

    def decode(self, data, indexes) -> np.ndarray:
        """Decodes one stream; returns int32 symbols shaped like ``indexes``."""
        idx = _as_int32("indexes", indexes)
        out = self._native.decode(_as_bytes("data", data), idx.reshape(-1))
        return out.reshape(idx.shape)

    def encode_batch(self, symbols, indexes, threads: int | None = None) -> list[bytes]:
        """Codes each of the ``B`` rows of ``symbols [B, ...]`` into its own stream.

        ``indexes`` is shared (shape ``symbols.shape[1:]``) or per stream (``symbols.shape``).
        """
        sym = _as_int32("symbols", symbols)
        if sym.ndim < 1:
            raise ValueError("symbols must have a leading batch dimension")
        idx = _as_int32("indexes", indexes)
        batch, item_shape = sym.shape[0], sym.shape[1:]
        item_size = math.prod(item_shape)
        if idx.shape == item_shape:
            idx_flat = idx.reshape(item_size)
        elif idx.shape == sym.shape:
            idx_flat = idx.reshape(batch, item_size)
        else:
            raise ValueError(
                f"indexes must have shape {item_shape} (shared) or {sym.shape} (per stream), "
                f"got {idx.shape}"
            )
        return self._native.encode_batch(
            sym.reshape(batch, item_size), idx_flat, _check_threads(threads)
        )

    def decode_batch(
        self, streams: Iterable, indexes, threads: int | None = None, *, shared: bool | None = None
    ) -> np.ndarray:
        """Decodes a list of ``B`` streams; returns int32 ``[B, *item_shape]``.

        ``indexes`` is shared by every stream (its shape is ``item_shape``) or per stream
        (``[B, *item_shape]``). By default a 1-D array is shared and an array whose leading
        dimension is ``B`` is per stream; pass ``shared=True/False`` when that is ambiguous.
        """
        if isinstance(streams, (bytes, bytearray, memoryview)):
            raise ValueError("streams must be a list of bytes objects, not a single bytes object")
        blobs = [_as_bytes(f"streams[{i}]", s) for i, s in enumerate(streams)]
        idx = _as_int32("indexes", indexes)
        batch = len(blobs)
        if shared is None:
            shared = not (idx.ndim >= 2 and idx.shape[0] == batch)
        if shared:
            item_shape, idx_native = idx.shape, idx.reshape(-1)
        else:
            if idx.ndim < 1 or idx.shape[0] != batch:
                raise ValueError(
                    f"per-stream indexes need a leading dimension of {batch}, got {idx.shape}"
                )
            item_shape = idx.shape[1:]
            idx_native = idx.reshape(batch, math.prod(item_shape))
        out = self._native.decode_batch(blobs, idx_native, _check_threads(threads))
        return out.reshape((batch, *item_shape))


def encode(symbols, indexes, cdfs, cdf_lengths, offsets, precision: int = 16) -> bytes:
    """Codes int32 ``symbols`` with table rows ``indexes`` (same shape) into one stream."""
    return CdfTables(cdfs, cdf_lengths, offsets, precision).encode(symbols, indexes)


def decode(data, indexes, cdfs, cdf_lengths, offsets, precision: int = 16) -> np.ndarray:
    """Decodes one stream made by :func:`encode`; returns int32 symbols shaped like ``indexes``."""
    return CdfTables(cdfs, cdf_lengths, offsets, precision).decode(data, indexes)


def encode_batch(
    symbols, indexes, cdfs, cdf_lengths, offsets, precision: int = 16, threads: int | None = None
) -> list[bytes]:
    """Codes ``symbols [B, K...]`` into ``B`` streams in parallel; ``indexes`` is ``[K...]`` or
    ``[B, K...]``. The bytes are identical for every thread count."""
    return CdfTables(cdfs, cdf_lengths, offsets, precision).encode_batch(symbols, indexes, threads)


def decode_batch(
    streams: Sequence[bytes],
    indexes,
    cdfs,
    cdf_lengths,
    offsets,
    precision: int = 16,
    threads: int | None = None,
    *,
    shared: bool | None = None,
) -> np.ndarray:
    """Decodes ``B`` streams in parallel; returns int32 ``[B, K...]`` (see
    :meth:`CdfTables.decode_batch` for ``shared``)."""
    return CdfTables(cdfs, cdf_lengths, offsets, precision).decode_batch(
        streams, indexes, threads, shared=shared
    )


class PieceEncoder:
    """Builds one stream from pieces, each coded with its own tables, in the order added.

    ``add`` only records the piece; ``flush`` codes every piece in one pass (the tables of all
    pieces merged into one set) and starts over. :class:`PieceDecoder` decodes the stream piece
    by piece with the same tables and indexes. The stream is an ordinary one: pieces that all
    use the same tables (the same object, or tables rebuilt with equal contents) give the very
    bytes of one :meth:`CdfTables.encode` over all their symbols."""

    def __init__(self) -> None:
        self._pieces: list[tuple[CdfTables, np.ndarray, np.ndarray]] = []
        # one CdfTables per distinct content: pieces that rebuild the same tables (one call per
        # position of a context model) share them, and the merged set stays small
        self._distinct: dict[tuple, CdfTables] = {}

    def __len__(self) -> int:
        """Pieces added since the last flush."""
        return len(self._pieces)

    def add(self, tables: CdfTables, symbols, indexes) -> None:
        """Records ``symbols`` (any shape, coded in C order) with rows ``indexes`` (same shape)
        of ``tables``; checks them now, so a bad piece is refused before anything is coded."""
        if not isinstance(tables, CdfTables):
            raise ValueError(f"tables must be CdfTables, got {type(tables).__name__}")
        sym = _as_int32("symbols", symbols).reshape(-1)
        idx = _as_int32("indexes", indexes)
        if idx.size != sym.size:
            raise ValueError(f"symbols has {sym.size} entries but indexes has {idx.size}")
        idx = idx.reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= tables.num_tables):
            raise ValueError(f"indexes must be in [0, {tables.num_tables}), got values in "
                             f"[{idx.min()}, {idx.max()}]")
        if self._pieces and tables.precision != self._pieces[0][0].precision:
            raise ValueError(f"every piece needs the same precision: {tables.precision} after "
                             f"{self._pieces[0][0].precision}")
        key = (tables.precision, *((a.shape, a.tobytes()) for a in tables._arrays))
        tables = self._distinct.setdefault(key, tables)
        self._pieces.append((tables, sym.copy(), idx.copy()))

    def flush(self) -> bytes:
        """The stream of every piece added since the last flush (an empty stream for none)."""
        pieces, self._pieces = self._pieces, []
        distinct, self._distinct = list(self._distinct.values()), {}
        if not pieces:
            return CdfTables([[0, 1, 2]], [3], [0], 1).encode(np.zeros(0, np.int32),
                                                            np.zeros(0, np.int32))
        if len(distinct) == 1:
            symbols = np.concatenate([sym for _, sym, _ in pieces])
            return distinct[0].encode(symbols, np.concatenate([idx for _, _, idx in pieces]))
        first_row, row = {}, 0  # id(tables) -> its first row in the merged set
        for t in distinct:
            first_row[id(t)], row = row, row + t.num_tables
        width = max(t._arrays[0].shape[1] for t in distinct)
        cdfs = np.concatenate([np.pad(t._arrays[0], ((0, 0), (0, width - t._arrays[0].shape[1])),
                                      mode="edge") for t in distinct])
        merged = CdfTables(cdfs, np.concatenate([t._arrays[1] for t in distinct]),
                           np.concatenate([t._arrays[2] for t in distinct]),
                           distinct[0].precision)
        symbols = np.concatenate([sym for _, sym, _ in pieces])
        indexes = np.concatenate([idx + first_row[id(t)] for t, _, idx in pieces])
        return merged.encode(symbols, indexes)


class PieceDecoder:
    """Decodes a stream made by :class:`PieceEncoder`, one piece per :meth:`decode` call, with
    the tables and indexes each piece was coded with.

    Corrupt or truncated bytes raise ``ValueError`` as soon as the stream runs out (and in every
    later call); :meth:`finish` checks that the stream ended exactly where the encoder began.
    Holds the GIL while decoding (pieces are small); one decoder is not for several threads."""

    def __init__(self, data) -> None:
        self._native = _rangecoder.PieceDecoder(_as_bytes("data", data))

    @property
    def decoded(self) -> int:
        """Symbols decoded so far."""
        return self._native.decoded

    def decode(self, tables: CdfTables, indexes) -> np.ndarray:
        """The next ``indexes.size`` symbols (int32, shaped like ``indexes``)."""
        if not isinstance(tables, CdfTables):
            raise ValueError(f"tables must be CdfTables, got {type(tables).__name__}")
        idx = _as_int32("indexes", indexes)
        return self._native.decode(tables._native, idx.reshape(-1)).reshape(idx.shape)

    def finish(self) -> None:
        """Raises ``ValueError`` unless every symbol of the stream was decoded and the bytes
        were the encoder's (a stream decoded with other tables or indexes ends elsewhere)."""
        if not self._native.at_clean_end:
            raise ValueError(f"corrupt stream, or not all of it decoded: the decoder stopped "
                             f"after {self.decoded} symbols where the encoder did not begin")
