"""Drop-in replacements for CompressAI's rANS coder classes (``compressai.ans``).

A CompressAI ``EntropyBottleneck`` / ``GaussianConditional`` user swaps coders in one line::

    from fastcodec.compat.compressai import RangeEncoder, RangeDecoder
    model.entropy_bottleneck.entropy_coder._encoder = RangeEncoder()   # or wrap your own calls
    model.entropy_bottleneck.entropy_coder._decoder = RangeDecoder()

Autoregressive models (``mbt2018``, ``cheng2020-*``) code their latent position by position;
their calls work unchanged: ``BufferedRansEncoder().encode_with_indexes(...)`` any number of
times, then ``flush()``; ``RansDecoder().set_stream(data)``, then ``decode_stream(indexes, cdfs,
cdfs_sizes, offsets)`` once per piece, with the tables that piece was coded with.

The signatures and argument conventions are CompressAI's (``cdfs_sizes`` = valid entries per row,
precision 16, escape bin last); Python lists (as CompressAI passes them, ragged rows included) or
arrays are accepted. The bytes are fastcodec's own stream format: a stream encoded here decodes
here, not with CompressAI's decoder, and vice versa.
"""

from __future__ import annotations

import numpy as np

from fastcodec.entropy.cdf import pack_cdfs
from fastcodec.rangecoder import CdfTables, PieceDecoder, PieceEncoder

__all__ = ["BufferedRansEncoder", "RangeDecoder", "RangeEncoder", "RansDecoder", "RansEncoder"]

_PRECISION = 16  # CompressAI's entropy models always use 16-bit tables


def _tables(cdfs, cdfs_sizes, offsets) -> CdfTables:
    if isinstance(cdfs, np.ndarray) or (hasattr(cdfs, "numpy") and hasattr(cdfs, "dim")):
        table = np.asarray(cdfs)
    else:
        rows = [np.asarray(r) for r in cdfs]
        if any(r.ndim != 1 for r in rows):
            raise ValueError("cdfs must be a list of 1-D rows or a 2-D array")
        widths = {len(r) for r in rows}
        if len(widths) > 1:  # ragged rows: pad them (entries past cdfs_sizes are ignored)
            if any(not np.issubdtype(r.dtype, np.integer) for r in rows if r.size):
                raise ValueError("cdfs rows must hold integers")
            table, _ = pack_cdfs([r.astype(np.int64) for r in rows])
        else:
            table = np.asarray(rows) if rows else np.zeros((0, 0), np.int32)
    return CdfTables(table, np.asarray(cdfs_sizes), np.asarray(offsets), _PRECISION)


class RangeEncoder:
    """``encode_with_indexes(symbols, indexes, cdfs, cdfs_sizes, offsets) -> bytes``."""

    def encode_with_indexes(self, symbols, indexes, cdfs, cdfs_sizes, offsets) -> bytes:
        return _tables(cdfs, cdfs_sizes, offsets).encode(np.asarray(symbols), np.asarray(indexes))


class BufferedRansEncoder:
    """``encode_with_indexes(...)`` any number of times (each call with its own tables), then
    ``flush() -> bytes``: one stream holding every call's symbols, in order."""

    def __init__(self) -> None:
        self._pieces = PieceEncoder()

    def encode_with_indexes(self, symbols, indexes, cdfs, cdfs_sizes, offsets) -> None:
        self._pieces.add(_tables(cdfs, cdfs_sizes, offsets), np.asarray(symbols),
                         np.asarray(indexes))

    def flush(self) -> bytes:
        return self._pieces.flush()


class RangeDecoder:
    """``decode_with_indexes(encoded, indexes, cdfs, cdfs_sizes, offsets) -> list[int]`` for a
    whole stream; ``set_stream(encoded)`` then ``decode_stream(indexes, cdfs, cdfs_sizes,
    offsets) -> list[int]`` for a stream made by :class:`BufferedRansEncoder`, piece by piece."""

    def __init__(self) -> None:
        self._stream: PieceDecoder | None = None

    def decode_with_indexes(self, encoded, indexes, cdfs, cdfs_sizes, offsets) -> list[int]:
        values = _tables(cdfs, cdfs_sizes, offsets).decode(encoded, np.asarray(indexes))
        return values.reshape(-1).tolist()

    def set_stream(self, encoded) -> None:
        self._stream = PieceDecoder(encoded)

    def decode_stream(self, indexes, cdfs, cdfs_sizes, offsets) -> list[int]:
        if self._stream is None:
            raise ValueError("decode_stream needs a stream: call set_stream(encoded) first")
        values = self._stream.decode(_tables(cdfs, cdfs_sizes, offsets), np.asarray(indexes))
        return values.reshape(-1).tolist()


# CompressAI's own class names, for code that imports them by those.
RansEncoder = RangeEncoder
RansDecoder = RangeDecoder
