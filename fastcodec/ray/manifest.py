"""The manifest of a run: one row per input (:data:`MANIFEST_SCHEMA`), its file name check,
its bytes (``.parquet`` or ``.jsonl``) and :func:`read_manifest`."""

from __future__ import annotations

import json
from typing import List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from fastcodec.storage import Location, read_file

#: One row per input. ``bytes``/``crc32`` describe the output file (CRC-32, zlib, of all its
#: bytes); ``bpp`` is bits of the ``.fcc`` per pixel; sizes are the image's; ``error`` is the
#: error text of a failed row (null otherwise).
MANIFEST_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("output", pa.string()),
    ("status", pa.string()),  # "ok" | "skipped" | "failed"
    ("bytes", pa.int64()),
    ("bpp", pa.float64()),
    ("crc32", pa.int64()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("quality", pa.float64()),
    ("error", pa.string()),
])


def check_manifest_name(manifest: Optional[str]) -> Optional[str]:
    if manifest is None:
        return None
    if not isinstance(manifest, str) or not manifest.endswith((".parquet", ".jsonl")):
        raise ValueError(f"manifest must be a file name ending in .parquet or .jsonl (or None), "
                         f"got {manifest!r}")
    return manifest


def manifest_bytes(table: "pa.Table", name: str) -> bytes:
    if name.endswith(".parquet"):
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return buf.getvalue().to_pybytes()
    lines = (json.dumps(row, sort_keys=False) for row in table.to_pylist())
    return "".join(line + "\n" for line in lines).encode()


def read_manifest(path, filesystem=None) -> List[dict]:
    """The rows of a manifest written by a run (``.parquet`` or ``.jsonl``), as dicts."""
    loc = Location.resolve(path, filesystem)
    data = read_file(loc.fs, loc.path)
    if loc.path.endswith(".parquet"):
        return pq.read_table(pa.BufferReader(data)).to_pylist()
    if loc.path.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    raise ValueError(f"{loc.uri}: a manifest ends in .parquet or .jsonl")
