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

import io
import json
import math
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

try:  # absolute imports: this module is fastcodec.ray, ``import ray`` is the real Ray
    import pyarrow as pa
    import pyarrow.fs as pafs  # noqa: F401  (tests and users reach it as fastcodec.ray.pafs)
    import pyarrow.parquet as pq
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'fastcodec.ray needs Ray Data: pip install "fastcodec[ray]" (or "ray[data]")'
    ) from exc

from fastcodec.storage import (  # noqa: F401  (re-exported: part of this module's API)
    Location,
    write_atomic,
    _read,
    image_extensions,
    _exists,
    _exists_error,
    _read_if_exists,
    _sweep_temporaries,
    _list_sources,
    _output_key,
    _check_output_collisions,
    _key_from_path,
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
]

_EXISTING = ("verify", "overwrite", "error")
_FCC = ".fcc"

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
_STATUSES = ("ok", "skipped", "failed")


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------


def _worker_setup(device: Optional[str], num_gpus: float, threads: int) -> str:
    import torch

    if device is None:
        device = "cuda" if num_gpus and torch.cuda.is_available() else "cpu"
    if str(device).startswith("cpu"):
        torch.set_num_threads(max(1, threads))
    return str(device)


class _Rows:
    """Collects manifest rows of one batch (columns of :data:`MANIFEST_SCHEMA`)."""

    def __init__(self) -> None:
        self.cols: Dict[str, list] = {name: [] for name in MANIFEST_SCHEMA.names}

    def add(self, source, output, status, *, data: Optional[bytes] = None, height=None,
            width=None, bpp=None, quality=None, error=None) -> None:
        values = dict(
            source=source, output=output, status=status,
            bytes=None if data is None else len(data),
            crc32=None if data is None else zlib.crc32(data),
            bpp=bpp, height=height, width=width, quality=quality, error=error,
        )
        for name, value in values.items():
            self.cols[name].append(value)

    def table(self) -> "pa.Table":
        return pa.table(self.cols, schema=MANIFEST_SCHEMA)


class _Item:
    """One input of a batch while it is processed."""

    __slots__ = ("source", "key", "out_path", "out_uri", "image", "blob")

    def __init__(self, source, key, out_path, out_uri):
        self.source, self.key, self.out_path, self.out_uri = source, key, out_path, out_uri
        self.image = self.blob = None


class _Worker:
    """Shared batch plumbing: where inputs come from and outputs go."""

    out_ext = _FCC

    def __init__(self, sources, dest, relative_to, path_column, io_threads):
        from concurrent.futures import ThreadPoolExecutor

        self.sources: Optional[List[Location]] = sources
        self.dest: Optional[Location] = dest
        self.relative_to = relative_to
        self.path_column = path_column
        # reads, image decoding, PNG encoding and writes of a batch run on these threads
        # (pyarrow I/O and Pillow release the GIL): hides object-store latency
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="fastcodec-io")

    def _each(self, fn, jobs: list) -> list:
        """``[fn(job) for job in jobs]`` on the I/O threads (``fn`` returns errors as values)."""
        return list(self._pool.map(fn, jobs)) if len(jobs) > 1 else [fn(j) for j in jobs]

    @staticmethod
    def _batch_or_isolate(code, items: list) -> list:
        """``code(items)`` (a list, one result per item) in one call; when that fails, item by
        item, so one bad item costs only itself: its entry is then the exception."""
        try:
            return list(code(items))
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        out: list = []
        for item in items:
            try:
                out.append(code([item])[0])
            except Exception as exc:
                out.append(exc)
        return out

    def _items(self, batch: Dict[str, np.ndarray], rows: _Rows) -> List[Tuple[_Item, Any]]:
        """(item, raw input) per row: raw is bytes read from the source, the row's ``bytes`` or
        its ``image`` array. Rows that fail here are recorded in ``rows``."""
        if self.sources is not None:
            n = len(batch["key"])
        else:
            if self.path_column not in batch:
                raise ValueError(
                    f"the Dataset needs a {self.path_column!r} column naming each input (e.g. "
                    f"read_images(..., include_paths=True)); columns: {sorted(batch)}"
                )
            n = len(batch[self.path_column])
        out = []
        for i in range(n):
            if self.sources is not None:
                loc = self.sources[int(batch["loc"][i])]
                key, path = str(batch["key"][i]), str(batch["path"][i])
                source = loc.uri_of(key) if path != loc.path else loc.uri
            else:
                source = str(batch[self.path_column][i])
                try:
                    key = _key_from_path(source, self.relative_to)
                except ValueError as exc:
                    rows.add(source, None, "failed", error=_error_text(exc))
                    continue
            out_key = _output_key(key, self.out_ext)
            item = (_Item(source, key, self.dest.join(out_key), self.dest.uri_of(out_key))
                    if self.dest is not None else _Item(source, key, None, None))
            out.append((item, (batch, i, loc, path) if self.sources is not None else (batch, i)))
        return out

    def _raw(self, ref) -> Tuple[str, Any]:
        """("bytes", data) or ("array", ndarray) for an item's reference."""
        if len(ref) == 4:
            _, _, loc, path = ref
            return "bytes", _read(loc.fs, path)
        batch, i = ref
        if "image" in batch:
            image = np.asarray(batch["image"][i])
            if image.ndim == 3 and image.shape[0] == 1 and image.shape[2] not in (1, 3, 4):
                image = image[0]  # read_images(mode=None) gives gray as [1, H, W]
            return "array", image
        if "bytes" in batch:
            return "bytes", bytes(batch["bytes"][i])
        raise ValueError(f"the Dataset needs an 'image' (array) or 'bytes' (file) column; "
                         f"columns: {sorted(batch)}")


class _CompressWorker(_Worker):
    """map_batches callable: loads the model once, then codes batches of images."""

    def __init__(self, *, sources, dest, relative_to, path_column, io_threads, quality, model,
                 device, num_gpus, threads, batch_size, transform_dtype, existing, convert,
                 refine_steps=0):
        super().__init__(sources, dest, relative_to, path_column, io_threads)
        from fastcodec import Codec, zoo

        device = _worker_setup(device, num_gpus, threads)
        self.codec = Codec(quality=quality, device=device, model=model, threads=threads,
                           batch_size=batch_size, transform_dtype=transform_dtype,
                           refine_steps=refine_steps)
        shipped = zoo.load_model(model, device)
        self.expect = (shipped.model_id, bytes(shipped.weights_hash), zoo.snap_quality(quality))
        self.quality = self.expect[2]
        self.existing, self.convert = existing, convert

    def _verified(self, blob: bytes):
        from fastcodec import container

        try:
            # our own output, checked for integrity: no pixel cap (it guards untrusted input)
            header, _ = container.unpack(blob, max_pixels=sys.maxsize)
        except ValueError:
            return None
        got = (header.model_id, bytes(header.weights_hash), header.quality)
        if got[:2] != self.expect[:2] or abs(got[2] - self.expect[2]) > 1e-9:
            return None
        return header

    def _decode(self, kind: str, raw):
        if kind == "array":
            return raw
        from PIL import UnidentifiedImageError

        from fastcodec.images import open_image_file

        try:  # as the command line reads files: EXIF orientation, 16-bit RGB needs convert
            image = open_image_file(io.BytesIO(raw), convert=self.convert)
        except ValueError:
            raise
        except UnidentifiedImageError:
            raise ValueError(f"not a readable image file ({len(raw)} bytes of unknown format "
                             f"or corrupt data)") from None
        except Exception as exc:
            raise ValueError(f"not a readable image file ({_error_text(exc)})") from None
        return image

    def _encode(self, images: list) -> List[Union[bytes, BaseException]]:
        """Blobs for ``images``; one batch call, or image by image to isolate a failure."""
        return self._batch_or_isolate(
            lambda part: self.codec.compress(part, convert=self.convert), images)

    def _prepare(self, job) -> tuple:
        """("skipped", data, header) when a verified output exists (``existing="verify"``),
        else ("image", decoded input) or ("failed", exception)."""
        item, ref = job
        try:
            if self.existing == "error" and _exists(self.dest.fs, item.out_path):
                raise _exists_error(item.out_uri)
            if self.existing == "verify":
                existing = _read_if_exists(self.dest.fs, item.out_path)
                header = self._verified(existing) if existing is not None else None
                if header is not None:
                    return "skipped", existing, header
            return "image", self._decode(*self._raw(ref))
        except Exception as exc:
            return "failed", exc

    def _write(self, job) -> Optional[BaseException]:
        item, blob = job
        try:
            write_atomic(self.dest.fs, item.out_path, blob)
        except Exception as exc:
            return exc
        return None

    def __call__(self, batch: Dict[str, np.ndarray]) -> "pa.Table":
        rows = _Rows()
        jobs = self._items(batch, rows)
        pending: List[_Item] = []
        for (item, _), prepared in zip(jobs, self._each(self._prepare, jobs)):
            if prepared[0] == "skipped":
                _, existing, header = prepared
                rows.add(item.source, item.out_uri, "skipped", data=existing,
                         height=header.height, width=header.width, quality=header.quality,
                         bpp=8.0 * len(existing) / (header.height * header.width))
            elif prepared[0] == "failed":
                rows.add(item.source, item.out_uri, "failed", error=_error_text(prepared[1]))
            else:
                item.image = prepared[1]
                pending.append(item)
        blobs = self._encode([it.image for it in pending]) if pending else []
        coded = [(it, b) for it, b in zip(pending, blobs) if not isinstance(b, BaseException)]
        written = iter(self._each(self._write, coded))
        for item, blob in zip(pending, blobs):
            error = blob if isinstance(blob, BaseException) else next(written)
            if error is not None:
                rows.add(item.source, item.out_uri, "failed", error=_error_text(error))
                continue
            width, height = _size_of(item.image)
            rows.add(item.source, item.out_uri, "ok", data=blob, height=height, width=width,
                     quality=self.quality, bpp=8.0 * len(blob) / (height * width))
        return rows.table()


def _size_of(image) -> Tuple[int, int]:
    """(width, height) of a PIL image or an HxW[xC] array."""
    if hasattr(image, "size") and not isinstance(image, np.ndarray):
        return int(image.size[0]), int(image.size[1])
    return int(image.shape[1]), int(image.shape[0])


class _DecompressWorker(_Worker):
    """map_batches callable: decodes ``.fcc`` blobs to PNG files (``dest``) or to arrays."""

    out_ext = ".png"

    def __init__(self, *, sources, dest, relative_to, path_column, io_threads, device, num_gpus,
                 threads, batch_size, existing, max_pixels):
        super().__init__(sources, dest, relative_to, path_column, io_threads)
        from fastcodec import Codec

        device = _worker_setup(device, num_gpus, threads)
        self.codec = Codec(device=device, threads=threads, batch_size=batch_size)
        self.existing, self.max_pixels = existing, max_pixels

    def _decode_all(self, blobs: list) -> List[Union[np.ndarray, BaseException]]:
        return self._batch_or_isolate(
            lambda part: self.codec.decompress(part, max_pixels=self.max_pixels), blobs)

    @staticmethod
    def _png_matches(data: Optional[bytes], header) -> bool:
        if data is None:
            return False
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.size == (header.width, header.height)
        except Exception:
            return False

    def _prepare(self, job) -> tuple:
        """("blob", data, header), ("skipped", data, header, png) when a PNG of the right size
        exists (``existing="verify"``), or ("failed", exception)."""
        from fastcodec import container

        item, ref = job
        try:
            kind, blob = self._raw(ref)
            if kind != "bytes":
                raise ValueError("decompress_dataset needs a 'bytes' column of .fcc data")
            header = container.read_header(blob, max_pixels=self.max_pixels)
            if self.dest is not None and self.existing == "error" and \
                    _exists(self.dest.fs, item.out_path):
                raise _exists_error(item.out_uri)
            if self.dest is not None and self.existing == "verify":
                existing = _read_if_exists(self.dest.fs, item.out_path)
                if self._png_matches(existing, header):
                    return "skipped", blob, header, existing
            return "blob", blob, header
        except Exception as exc:
            return "failed", exc

    def _write(self, job):
        """PNG bytes written for ``(item, image)``, or the exception."""
        item, image = job
        try:
            data = _png_bytes(image)
            write_atomic(self.dest.fs, item.out_path, data)
        except Exception as exc:
            return exc
        return data

    def __call__(self, batch: Dict[str, np.ndarray]):
        rows = _Rows()
        jobs = self._items(batch, rows)
        pending: List[Tuple[_Item, Any]] = []  # (item, header)
        failed_arrays: List[Tuple[_Item, str]] = []
        for (item, _), prepared in zip(jobs, self._each(self._prepare, jobs)):
            if prepared[0] == "failed":
                error = _error_text(prepared[1])
                if self.dest is None:
                    failed_arrays.append((item, error))
                else:
                    rows.add(item.source, item.out_uri, "failed", error=error)
            elif prepared[0] == "skipped":
                _, blob, header, existing = prepared
                rows.add(item.source, item.out_uri, "skipped", data=existing,
                         height=header.height, width=header.width, quality=header.quality,
                         bpp=8.0 * len(blob) / (header.height * header.width))
            else:
                item.blob = prepared[1]
                pending.append((item, prepared[2]))
        decoded = self._decode_all([it.blob for it, _ in pending]) if pending else []
        if self.dest is None:
            return self._arrays(pending, decoded, failed_arrays)
        good = [(it, im) for (it, _), im in zip(pending, decoded)
                if not isinstance(im, BaseException)]
        written = iter(self._each(self._write, good))
        for (item, header), image in zip(pending, decoded):
            data = image if isinstance(image, BaseException) else next(written)
            if isinstance(data, BaseException):
                rows.add(item.source, item.out_uri, "failed", error=_error_text(data))
                continue
            rows.add(item.source, item.out_uri, "ok", data=data, height=header.height,
                     width=header.width, quality=header.quality,
                     bpp=8.0 * len(item.blob) / (header.height * header.width))
        return rows.table()

    @staticmethod
    def _arrays(pending, decoded, failed) -> Dict[str, Any]:
        """Columns ``source``, ``path`` (relative key), ``image`` (uint8 HxWx3, or HxWx1 for
        grayscale; 0x0x3 for a failed row), ``layout`` and ``error`` (None when decoded)."""
        cols: Dict[str, list] = {"source": [], "path": [], "image": [], "layout": [], "error": []}

        def add(item, image, layout, error):
            cols["source"].append(item.source)
            cols["path"].append(item.key)
            cols["image"].append(image)
            cols["layout"].append(layout)
            cols["error"].append(error)

        empty = np.zeros((0, 0, 3), np.uint8)
        for (item, header), image in zip(pending, decoded):
            if isinstance(image, BaseException):
                add(item, empty, None, _error_text(image))
            else:
                add(item, image[..., None] if image.ndim == 2 else image, header.layout, None)
        for item, error in failed:
            add(item, empty, None, error)
        return cols


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    arr = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run did. ``images_per_second`` counts every input (skipped ones included) over
    the wall time of the run on the driver (actor start-up included)."""

    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    workers: int = 0
    stopped: bool = False  # fail_fast stopped the run before every input was done
    manifest: Optional[str] = None
    failures: List[Tuple[str, str]] = field(default_factory=list)  # first 20 (source, error)

    def as_dict(self) -> dict:
        return asdict(self)


def _ensure_ray(address: Optional[str] = None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True)


def _plan_resources(num_gpus_per_worker, num_cpus_per_worker, concurrency, device,
                    is_dataset: bool) -> Tuple[float, float, Union[int, Tuple[int, int]]]:
    """(GPUs per worker, CPUs per worker, actor pool size) from the arguments and the cluster:
    one worker per GPU when the cluster has GPUs (unless ``device`` is a CPU), else one per CPU
    (one CPU left for the read tasks of a Dataset source)."""
    resources = ray.cluster_resources()
    total_cpu = float(resources.get("CPU", 1.0))
    total_gpu = float(resources.get("GPU", 0.0))
    if num_gpus_per_worker is None:
        wants_cpu = device is not None and str(device).startswith("cpu")
        num_gpus_per_worker = 1.0 if total_gpu > 0 and not wants_cpu else 0.0
    num_gpus_per_worker = float(num_gpus_per_worker)
    if num_gpus_per_worker < 0 or not math.isfinite(num_gpus_per_worker):
        raise ValueError(f"num_gpus_per_worker must be >= 0, got {num_gpus_per_worker}")
    if num_cpus_per_worker is None:
        if num_gpus_per_worker > 0 and total_gpu > 0:
            per_gpu = total_cpu / total_gpu * num_gpus_per_worker
            num_cpus_per_worker = float(min(8, max(1, int(per_gpu) - 1)))
        else:
            num_cpus_per_worker = 1.0
    num_cpus_per_worker = float(num_cpus_per_worker)
    if num_cpus_per_worker <= 0:
        raise ValueError(f"num_cpus_per_worker must be > 0, got {num_cpus_per_worker}")
    if concurrency is None:
        if num_gpus_per_worker > 0:
            concurrency = max(1, int(total_gpu / num_gpus_per_worker))
        else:
            spare = 1.0 if is_dataset and total_cpu > num_cpus_per_worker else 0.0
            concurrency = max(1, int((total_cpu - spare) / num_cpus_per_worker))
    elif isinstance(concurrency, tuple):
        if len(concurrency) != 2 or not all(isinstance(c, int) and c >= 1 for c in concurrency) \
                or concurrency[0] > concurrency[1]:
            raise ValueError(f"concurrency must be an int >= 1 or (min, max), got {concurrency}")
    elif isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1 or (min, max), got {concurrency!r}")
    return num_gpus_per_worker, num_cpus_per_worker, concurrency


def _pool(concurrency) -> "ray.data.ActorPoolStrategy":
    if isinstance(concurrency, tuple):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ray.data.ActorPoolStrategy(size=concurrency)


def _check_manifest_name(manifest: Optional[str]) -> Optional[str]:
    if manifest is None:
        return None
    if not isinstance(manifest, str) or not manifest.endswith((".parquet", ".jsonl")):
        raise ValueError(f"manifest must be a file name ending in .parquet or .jsonl (or None), "
                         f"got {manifest!r}")
    return manifest


def _manifest_bytes(table: "pa.Table", name: str) -> bytes:
    if name.endswith(".parquet"):
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return buf.getvalue().to_pybytes()
    lines = (json.dumps(row, sort_keys=False) for row in table.to_pylist())
    return "".join(line + "\n" for line in lines).encode()


def read_manifest(path, filesystem=None) -> List[dict]:
    """The rows of a manifest written by a run (``.parquet`` or ``.jsonl``), as dicts."""
    loc = Location.resolve(path, filesystem)
    data = _read(loc.fs, loc.path)
    if loc.path.endswith(".parquet"):
        return pq.read_table(pa.BufferReader(data)).to_pylist()
    if loc.path.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    raise ValueError(f"{loc.uri}: a manifest ends in .parquet or .jsonl")


@dataclass
class _Job:
    """A planned run: the input Dataset (None when a folder source has no files), where it goes
    and the resources of the actor pool."""

    ds: Any
    total: Optional[int]  # number of inputs (None for a Dataset source)
    dest: Optional[Location]
    manifest: Optional[str]
    batch_size: int
    num_gpus: float
    num_cpus: float
    pool: Union[int, Tuple[int, int]]
    worker_kwargs: dict  # constructor arguments shared by both workers

    @classmethod
    def plan(cls, source, dest, *, filesystem, extensions, out_ext, batch_size, io_threads,
             manifest, num_gpus_per_worker, num_cpus_per_worker, concurrency, device,
             relative_to, path_column) -> "_Job":
        """Checks the arguments, starts Ray when needed, lists a folder source."""
        batch_size = _check_positive_int("batch_size", batch_size)
        io_threads = _check_positive_int("io_threads", io_threads)
        manifest = _check_manifest_name(manifest)
        dest_loc = None if dest is None else Location.resolve(dest, filesystem)
        _ensure_ray()
        is_dataset = isinstance(source, ray.data.Dataset)
        gpus, cpus, pool = _plan_resources(num_gpus_per_worker, num_cpus_per_worker,
                                           concurrency, device, is_dataset)
        locations, ds, total = None, source, None
        if not is_dataset:
            if isinstance(source, (list, tuple)) and not source:
                raise ValueError("no source given")
            locations, rows = _list_sources(source, filesystem, extensions, skip=dest_loc)
            _check_output_collisions(rows, out_ext)
            total = len(rows)
            # about one block per batch (bounded, so that huge listings stay cheap to schedule)
            most = pool[1] if isinstance(pool, tuple) else pool
            blocks = min(len(rows), math.ceil(len(rows) / batch_size), max(8 * most, 200))
            ds = ray.data.from_items(rows, override_num_blocks=max(1, blocks)) if rows else None
        kwargs = dict(sources=locations, dest=dest_loc, relative_to=relative_to,
                      path_column=path_column, io_threads=io_threads, device=device,
                      num_gpus=gpus, threads=max(1, int(cpus)), batch_size=batch_size)
        return cls(ds, total, dest_loc, manifest, batch_size, gpus, cpus, pool, kwargs)

    def mapped(self, worker_cls, kwargs: dict):
        """The lazy ``map_batches`` of ``worker_cls`` over the input."""
        return self.ds.map_batches(
            worker_cls,
            fn_constructor_kwargs=kwargs,
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=_pool(self.pool),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus if self.num_gpus > 0 else None,
        )


def _run(job: _Job, worker_cls, kwargs: dict, *, started: float, progress,
         fail_fast: bool) -> RunSummary:
    """Runs the job, writes the manifest (sorted by source) and sums up."""
    summary = RunSummary(workers=job.pool[1] if isinstance(job.pool, tuple) else job.pool)
    tables = []
    batches = iter(job.mapped(worker_cls, kwargs).iter_batches(
        batch_size=None, batch_format="pyarrow", prefetch_batches=2))
    try:
        for table in batches:
            table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
            tables.append(table)
            _count(summary, table)
            if progress is not None:
                progress(summary.total, job.total)
            if fail_fast and summary.failed:
                summary.stopped = True
                break
    finally:  # on an error or interruption: stop the executor (a worker finishes its batch)
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    merged = pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
    merged = merged.sort_by([("source", "ascending")])
    if job.manifest is not None:
        write_atomic(job.dest.fs, job.dest.join(job.manifest),
                     _manifest_bytes(merged, job.manifest))
        summary.manifest = job.dest.uri_of(job.manifest)
    _sweep_temporaries(job.dest, started)
    summary.seconds = time.time() - started
    summary.images_per_second = summary.total / summary.seconds if summary.seconds > 0 else 0.0
    return summary


def _count(summary: RunSummary, table: "pa.Table") -> None:
    status = table.column("status").to_pylist()
    sizes = table.column("bytes").to_pylist()
    errors = table.column("error").to_pylist()
    sources = table.column("source").to_pylist()
    for s, b, e, src in zip(status, sizes, errors, sources):
        summary.total += 1
        if s not in _STATUSES:
            raise RuntimeError(f"worker returned unknown status {s!r}")
        setattr(summary, s, getattr(summary, s) + 1)
        if s == "failed" and len(summary.failures) < 20:
            summary.failures.append((src, e))
        if s != "failed" and b is not None:
            summary.bytes_out += b


def _check_existing(existing) -> str:
    if existing not in _EXISTING:
        raise ValueError(f"existing must be one of {_EXISTING}, got {existing!r}")
    return existing


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def compress_dataset(
    source,
    dest,
    *,
    quality: float = 4.0,
    model: Optional[str] = None,
    device: Optional[str] = None,
    num_gpus_per_worker: Optional[float] = None,
    num_cpus_per_worker: Optional[float] = None,
    concurrency: Union[int, Tuple[int, int], None] = None,
    batch_size: int = 8,
    io_threads: int = 8,
    transform_dtype=None,
    refine_steps: int = 0,
    existing: str = "verify",
    fail_fast: bool = False,
    convert: bool = False,
    manifest: Optional[str] = "_manifest.parquet",
    filesystem=None,
    extensions: Optional[Sequence[str]] = None,
    relative_to: Optional[str] = None,
    path_column: str = "path",
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> RunSummary:
    """Compresses every image of ``source`` into one ``.fcc`` per image under ``dest``.

    Args:
        source: a folder, an image file, a URI (``s3://bucket/photos``, ``gs://...``,
            ``file://...``) or a list of them; folders are listed recursively for files with
            ``extensions`` (default: :func:`image_extensions`; hidden files skipped) and
            ``a/b.png`` becomes ``dest/a/b.fcc``.
            Or a ``ray.data.Dataset`` whose rows hold an ``image`` (uint8 HxWx3 / HxW / HxWx1
            array, as ``read_images`` gives) or ``bytes`` (an encoded image file, as
            ``read_binary_files`` gives) and a ``path_column`` naming the image; the output
            key is that path minus ``relative_to`` (default: minus leading slashes).
        dest: output folder or URI (any ``pyarrow.fs`` filesystem); ``filesystem`` overrides
            the URI's (e.g. an ``S3FileSystem`` with credentials), with ``source`` and ``dest``
            then paths inside it.
        quality: public quality in [1, 6] (snapped to the 0.25 grid), as in ``fastcodec.Codec``.
        model: shipped model id (default: ``fastcodec.zoo.DEFAULT_MODEL``).
        device: torch device of the workers (default: their GPU when they have one, else CPU).
        num_gpus_per_worker: GPUs each worker reserves (fractions share a GPU); default 1 when
            the cluster has GPUs and ``device`` is not a CPU, else 0.
        num_cpus_per_worker: CPUs each worker reserves and uses (torch threads on CPU, range
            coder threads); default 1 for CPU workers, a share of the node's CPUs per GPU worker.
        concurrency: actor pool size (int) or autoscaling bounds ``(min, max)``; default one per
            GPU or per CPU of the cluster.
        batch_size: images per ``map_batches`` call (and per transform batch).
        refine_steps: encoder-side latent refinement steps per image (``fastcodec.Codec``;
            0: off).
        io_threads: threads per worker for reading, decoding and writing the files of a batch
            (they mostly wait on storage; more helps on object stores).
        existing: what to do with an output that already exists: ``"verify"`` keeps it when
            it verifies (same model, weights and quality; CRCs intact) and rewrites it
            otherwise, ``"overwrite"`` recodes, ``"error"`` leaves it and fails its input.
        fail_fast: stop after the first batch with a failure (the manifest then lists the
            inputs done so far and ``summary.stopped`` is True); default: go on.
        convert: convert RGBA / 16-bit / palette images instead of failing them (see
            ``fastcodec.images.to_rgb_uint8``).
        manifest: file name under ``dest`` (``.parquet`` or ``.jsonl``) or None for none.
        progress: called on the driver as ``progress(done, total)`` (total None for Dataset
            sources) as results arrive; an exception raised there stops the run (outputs
            written so far stay and a rerun skips them).

    Returns a :class:`RunSummary`. Per-image failures do not raise: they are in the manifest
    (and ``summary.failures``). Raises ValueError/TypeError for bad arguments, FileNotFoundError
    for a missing source folder.
    """
    from fastcodec import zoo

    started = time.time()
    model = zoo.DEFAULT_MODEL if model is None else model
    q = zoo.snap_quality(quality)
    if model not in zoo.available_models():
        raise ValueError(f"unknown model {model!r}; installed: {zoo.available_models()}")
    extensions = image_extensions() if extensions is None else tuple(extensions)
    existing = _check_existing(existing)
    from fastcodec.refine import check_steps

    refine_steps = check_steps(refine_steps)
    job = _Job.plan(source, dest, filesystem=filesystem, extensions=extensions, out_ext=_FCC,
                    batch_size=batch_size, io_threads=io_threads, manifest=manifest,
                    num_gpus_per_worker=num_gpus_per_worker,
                    num_cpus_per_worker=num_cpus_per_worker, concurrency=concurrency,
                    device=device, relative_to=relative_to, path_column=path_column)
    if job.ds is None:
        return _empty_run(job.dest, job.manifest, started)
    kwargs = dict(job.worker_kwargs, quality=q, model=model,
                  transform_dtype=transform_dtype, existing=existing, convert=bool(convert),
                  refine_steps=refine_steps)
    return _run(job, _CompressWorker, kwargs, started=started, progress=progress,
                fail_fast=fail_fast)


def _empty_run(dest: Location, manifest: Optional[str], started: float) -> RunSummary:
    summary = RunSummary()
    if manifest is not None:
        write_atomic(dest.fs, dest.join(manifest),
                     _manifest_bytes(MANIFEST_SCHEMA.empty_table(), manifest))
        summary.manifest = dest.uri_of(manifest)
    summary.seconds = time.time() - started
    return summary


def decompress_dataset(
    source,
    dest=None,
    *,
    device: Optional[str] = None,
    num_gpus_per_worker: Optional[float] = None,
    num_cpus_per_worker: Optional[float] = None,
    concurrency: Union[int, Tuple[int, int], None] = None,
    batch_size: int = 8,
    io_threads: int = 8,
    existing: str = "verify",
    fail_fast: bool = False,
    manifest: Optional[str] = "_manifest.parquet",
    filesystem=None,
    relative_to: Optional[str] = None,
    path_column: str = "path",
    max_pixels: Optional[int] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
):
    """Decodes ``.fcc`` files back to images.

    ``source``: a folder/URI/list (``*.fcc`` files, listed recursively) or a Dataset with
    ``bytes`` (container data) and ``path_column`` columns. With ``dest`` (folder or URI), one
    PNG per input (``a/b.fcc`` -> ``dest/a/b.png``), written atomically (``existing`` as in
    :func:`compress_dataset`; "verify" keeps a PNG that decodes at the right size), a manifest,
    and a :class:`RunSummary` returned (``bpp`` in the manifest is the ``.fcc``'s,
    ``bytes``/``crc32`` the PNG's). With ``dest=None``, a lazy
    ``ray.data.Dataset`` with columns ``source``, ``path`` (relative key), ``image`` (uint8
    HxWx3, HxWx1 for grayscale, 0x0x3 where decoding failed), ``layout`` and ``error`` (None
    or the error text). Other arguments as in :func:`compress_dataset`."""
    from fastcodec import container

    started = time.time()
    max_pixels = container.DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    existing = _check_existing(existing)
    job = _Job.plan(source, dest, filesystem=filesystem, extensions=(_FCC,), out_ext=".png",
                    batch_size=batch_size, io_threads=io_threads, manifest=manifest,
                    num_gpus_per_worker=num_gpus_per_worker,
                    num_cpus_per_worker=num_cpus_per_worker, concurrency=concurrency,
                    device=device, relative_to=relative_to, path_column=path_column)
    kwargs = dict(job.worker_kwargs, existing=existing, max_pixels=max_pixels)
    if job.dest is None:
        return ray.data.from_items([]) if job.ds is None else job.mapped(_DecompressWorker, kwargs)
    if job.ds is None:
        return _empty_run(job.dest, job.manifest, started)
    return _run(job, _DecompressWorker, kwargs, started=started, progress=progress,
                fail_fast=fail_fast)


# ---------------------------------------------------------------------------------------------
# command line: ``fastcodec compress --ray [ADDRESS] INPUT... -o DEST``
# ---------------------------------------------------------------------------------------------

_LOCAL = (None, True, "", "local")


def _ray_address(args) -> Optional[str]:
    """The ``--ray`` value: absent/empty/"local" -> None (join the cluster already running on
    this machine, else start a local one); anything else (``auto``, ``HOST:PORT``,
    ``ray://HOST:10001``) goes to ``ray.init(address=...)``."""
    value = getattr(args, "ray", None)
    if value is None:
        value = getattr(args, "ray_address", None)
    return None if value in _LOCAL else str(value)


def _cli_existing(args) -> str:
    """The shared CLI rule: never overwrite without ``--force``; ``--skip-existing`` keeps valid
    outputs (and rewrites damaged ones, so it finishes an interrupted run)."""
    if getattr(args, "force", False):
        return "overwrite"
    return "verify" if getattr(args, "skip_existing", False) else "error"


def run_cli(args) -> int:
    """``fastcodec compress --ray [ADDRESS]``: the parsed compress Namespace (``inputs``, ``out``,
    ``quality``, ``device``, ``batch_size``, ``force``, ``skip_existing``, ``keep_going``,
    ``json``, ``ray``; optional ``model``, ``convert``, ``workers``, ``gpus_per_worker``) run
    through :func:`compress_dataset`, with the command line's rules: existing outputs are an
    error unless ``--force`` (recode) or ``--skip-existing`` (keep the valid ones); without
    ``--keep-going`` the run stops after the first batch with a failure. The manifest goes to
    ``OUT/_manifest.parquet``. Returns 0 when every image was coded or skipped, 1 when any
    failed, 2 for usage errors, 130 when interrupted."""
    inputs = list(getattr(args, "inputs", None) or [])
    out = getattr(args, "out", None)
    if not inputs or not out:
        print("fastcodec compress --ray: give INPUT (folder, file or URI) and -o DEST "
              "(folder or URI)", file=sys.stderr)
        return 2
    quiet = bool(getattr(args, "json", False))
    last = [time.time()]

    def progress(done, total):
        if not quiet and time.time() - last[0] >= 5.0:
            last[0] = time.time()
            print(f"  {done}/{total} images", file=sys.stderr, flush=True)

    try:
        _ensure_ray(_ray_address(args))
        summary = compress_dataset(
            inputs if len(inputs) > 1 else inputs[0], out,
            quality=4.0 if getattr(args, "quality", None) is None else args.quality,
            model=getattr(args, "model", None),
            device=getattr(args, "device", None),
            batch_size=getattr(args, "batch_size", None) or 8,
            transform_dtype=getattr(args, "dtype", None),
            refine_steps=getattr(args, "refine", 0) or 0,
            existing=_cli_existing(args),
            fail_fast=not getattr(args, "keep_going", False),
            convert=bool(getattr(args, "convert", False)),
            concurrency=getattr(args, "workers", None),
            num_gpus_per_worker=getattr(args, "gpus_per_worker", None),
            progress=progress,
        )
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fastcodec compress --ray: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastcodec compress --ray: interrupted (outputs written so far are complete; "
              "rerun with --skip-existing to finish)", file=sys.stderr)
        return 130
    if quiet:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        stopped = " (stopped at the first failure)" if summary.stopped else ""
        print(f"{summary.total} images: {summary.ok} compressed, {summary.skipped} already done, "
              f"{summary.failed} failed{stopped}; {summary.bytes_out} bytes in "
              f"{summary.seconds:.1f} s "
              f"({summary.images_per_second:.1f} images/s, {summary.workers} workers)")
        if summary.manifest:
            print(f"manifest: {summary.manifest}")
    for src, err in summary.failures:
        print(f"failed: {src}: {err}", file=sys.stderr)
    return 1 if summary.failed else 0
