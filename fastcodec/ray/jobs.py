"""The public API and its driver: :func:`compress_dataset` and :func:`decompress_dataset` plan a
job, run the workers over it on Ray Data, write the manifest and sum up in a :class:`RunSummary`."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import ray
import ray.data

from fastcodec.ray.manifest import MANIFEST_SCHEMA, check_manifest_name, manifest_bytes
from fastcodec.ray.resources import actor_pool, ensure_ray, plan_resources
from fastcodec.ray.workers import FCC, CompressWorker, DecompressWorker
from fastcodec.storage import (
    Location,
    write_atomic,
    image_extensions,
    sweep_temporaries,
    list_sources,
    check_output_collisions,
)

_EXISTING = ("verify", "overwrite", "error")
_STATUSES = ("ok", "skipped", "failed")


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
        manifest = check_manifest_name(manifest)
        dest_loc = None if dest is None else Location.resolve(dest, filesystem)
        ensure_ray()
        is_dataset = isinstance(source, ray.data.Dataset)
        gpus, cpus, pool = plan_resources(num_gpus_per_worker, num_cpus_per_worker,
                                          concurrency, device, is_dataset)
        locations, ds, total = None, source, None
        if not is_dataset:
            if isinstance(source, (list, tuple)) and not source:
                raise ValueError("no source given")
            locations, rows = list_sources(source, filesystem, extensions, skip=dest_loc)
            check_output_collisions(rows, out_ext)
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
            compute=actor_pool(self.pool),
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
                     manifest_bytes(merged, job.manifest))
        summary.manifest = job.dest.uri_of(job.manifest)
    sweep_temporaries(job.dest, started)
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
    job = _Job.plan(source, dest, filesystem=filesystem, extensions=extensions, out_ext=FCC,
                    batch_size=batch_size, io_threads=io_threads, manifest=manifest,
                    num_gpus_per_worker=num_gpus_per_worker,
                    num_cpus_per_worker=num_cpus_per_worker, concurrency=concurrency,
                    device=device, relative_to=relative_to, path_column=path_column)
    if job.ds is None:
        return _empty_run(job.dest, job.manifest, started)
    kwargs = dict(job.worker_kwargs, quality=q, model=model,
                  transform_dtype=transform_dtype, existing=existing, convert=bool(convert),
                  refine_steps=refine_steps)
    return _run(job, CompressWorker, kwargs, started=started, progress=progress,
                fail_fast=fail_fast)


def _empty_run(dest: Location, manifest: Optional[str], started: float) -> RunSummary:
    summary = RunSummary()
    if manifest is not None:
        write_atomic(dest.fs, dest.join(manifest),
                     manifest_bytes(MANIFEST_SCHEMA.empty_table(), manifest))
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
    job = _Job.plan(source, dest, filesystem=filesystem, extensions=(FCC,), out_ext=".png",
                    batch_size=batch_size, io_threads=io_threads, manifest=manifest,
                    num_gpus_per_worker=num_gpus_per_worker,
                    num_cpus_per_worker=num_cpus_per_worker, concurrency=concurrency,
                    device=device, relative_to=relative_to, path_column=path_column)
    kwargs = dict(job.worker_kwargs, existing=existing, max_pixels=max_pixels)
    if job.dest is None:
        return ray.data.from_items([]) if job.ds is None else job.mapped(DecompressWorker, kwargs)
    if job.ds is None:
        return _empty_run(job.dest, job.manifest, started)
    return _run(job, DecompressWorker, kwargs, started=started, progress=progress,
                fail_fast=fail_fast)
