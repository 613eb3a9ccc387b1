"""Dataset-scale compression on Ray Data (optional: ``pip install "fastcodec[ray]"``).

``compress_dataset(source, dest, quality=...)`` codes every image of a folder or URI (local,
``s3://``, ``gs://``: anything ``pyarrow.fs`` opens) or of a ``ray.data.Dataset`` into one
``.fcc`` per image under ``dest``, keeping relative paths (``a/b.png`` -> ``dest/a/b.fcc``);
``decompress_dataset(source, dest)`` writes PNGs back, or, with ``dest=None``, returns a Dataset
of decoded arrays.

The work runs in ``Dataset.map_batches`` with a stateful callable class: each Ray actor loads the
weights once (on its GPU when it was given one) and then codes batches of ``batch_size`` images,
so Ray does the scheduling, backpressure, retries of lost workers and GPU placement. Workers
read their inputs and write their outputs themselves through ``pyarrow.fs``; only a small
manifest row per image travels back to the driver.

Guarantees:

* Atomic outputs: on filesystems with an atomic rename (local, HDFS) a file is written under a
  hidden temporary name next to its target and renamed; on object stores (S3, GCS, Azure), where
  a rename is a copy, the object is written in one upload, which the store only makes visible
  once complete. Readers never see a partial ``.fcc``.
* Resumable and idempotent (``existing="verify"``, the default): an output that already exists
  and verifies (the container parses, its CRCs match, and it was made by the same model and
  weights at the same quality) is kept and reported as ``skipped``; anything else is (re)written.
  ``existing="overwrite"`` recodes everything; ``existing="error"`` leaves every existing output
  alone and reports its input as failed (the command line's default, as without ``--force``).
* Per-image failures (unreadable or undecodable files, unsupported image modes, write errors) are
  recorded in the manifest with ``status="failed"`` and the error text; they do not fail the job.

The manifest (``dest/_manifest.parquet`` by default, or ``.jsonl``) has one row per input, sorted
by source: see :data:`MANIFEST_SCHEMA`.
"""

from __future__ import annotations

# Every module of the package imports Ray Data and pyarrow at its top (absolute imports: there
# ``import ray`` is the real Ray, not this package): checked here, once, for a clear error.
try:
    import pyarrow.fs as pafs  # tests and users reach it as fastcodec.ray.pafs
    import pyarrow.parquet
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'fastcodec.ray needs Ray Data: pip install "fastcodec[ray]" (or "ray[data]")'
    ) from exc

del pyarrow, ray  # imported above only to check them

from fastcodec.ray.command import run_cli
from fastcodec.ray.jobs import RunSummary, compress_dataset, decompress_dataset
from fastcodec.ray.manifest import MANIFEST_SCHEMA, read_manifest
from fastcodec.storage import (  # re-exported: part of this package's API
    Location,
    image_extensions,
    write_atomic,
)

__all__ = [
    "image_extensions",
    "MANIFEST_SCHEMA",
    "Location",
    "RunSummary",
    "compress_dataset",
    "decompress_dataset",
    "read_manifest",
    "run_cli",
    "write_atomic",
    "pafs",
]
