"""Drop-in replacements for CompressAI's rANS coder classes (``compressai.ans``).

A CompressAI ``EntropyBottleneck`` / ``GaussianConditional`` user swaps coders in one line::

    from fastcodec.compat.compressai import RangeEncoder, RangeDecoder
    model.entropy_bottleneck.entropy_coder._encoder = RangeEncoder()   # or wrap your own calls
    model.entropy_bottleneck.entropy_coder._decoder = RangeDecoder()

The signatures and argument conventions are CompressAI's (``cdfs_sizes`` = valid entries per row,
precision 16, escape bin last); Python lists (as CompressAI passes them, ragged rows included) or
arrays are accepted. The bytes are fastcodec's own stream format: a stream encoded here decodes
here, not with CompressAI's decoder, and vice versa.
"""

from __future__ import annotations

import numpy as np

from fastcodec.entropy.cdf import pack_cdfs
from fastcodec.rangecoder import CdfTables

__all__ = ["RangeDecoder", "RangeEncoder", "RansDecoder", "RansEncoder"]

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


class RangeDecoder:
    """``decode_with_indexes(encoded, indexes, cdfs, cdfs_sizes, offsets) -> list[int]``."""

    def decode_with_indexes(self, encoded, indexes, cdfs, cdfs_sizes, offsets) -> list[int]:
        values = _tables(cdfs, cdfs_sizes, offsets).decode(encoded, np.asarray(indexes))
        return values.reshape(-1).tolist()


# CompressAI's own class names, for code that imports them by those.
RansEncoder = RangeEncoder
RansDecoder = RangeDecoder
