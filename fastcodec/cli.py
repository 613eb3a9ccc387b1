"""The ``fastcodec`` command line (also ``python -m fastcodec``).

Subcommands: ``compress``, ``decompress``, ``info``, ``demo``, ``eval``, ``bench``, ``train``
(``fastcodec COMMAND --help`` for each).

Rules shared by ``compress`` and ``decompress``:

* Inputs are files or folders. A folder is searched recursively (sorted; hidden names and the
  output folder are skipped) for the files the command reads, and each output keeps its path
  relative to that folder: ``compress photos -o out`` writes ``photos/a/b.png`` to
  ``out/a/b.fcc``. A file named on the command line is written under its own name
  (``x/b.png`` -> ``out/b.fcc``). Two inputs that would be written to the same output (``b.png``
  and ``b.jpg``, or two ``b.png`` from different places) are a usage error, reported before
  anything is written.
* An existing output is never overwritten without ``--force``: it is an error naming the file
  (``--skip-existing`` skips it instead). Every output is written to a temporary file in its
  folder, fsync'ed and renamed into place, so an interrupted run leaves only complete outputs; run
  the same command again with ``--skip-existing`` to finish it. (Ctrl-C and SIGTERM remove the
  temporary files; only a hard kill can leave a hidden ``.NAME.*.fcctmp`` behind.)
* Without ``--keep-going`` the run stops at the first failure (outputs already written stay
  valid); with it, each failure is reported on one line and the other files go on.
* Exit status: 0 when every file succeeded (or was skipped), 1 when any failed, 2 for usage
  errors (bad options, missing inputs, output name collisions, a codec that cannot be set up),
  130 when interrupted (Ctrl-C or SIGTERM).
* A progress bar is drawn on stderr when it is a terminal; a summary table goes to stdout at the
  end (files, megapixels, bytes in and out, bpp, MP/s over the coding time, the one-off codec
  set-up not included), or with ``--json`` one JSON document (every file's status, sizes and
  bpp, and the totals).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcodec.progress import Progress, format_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Formats ``decompress --format`` writes: name -> (Pillow format, file extension).
OUTPUT_FORMATS = {"png": ("PNG", ".png"), "bmp": ("BMP", ".bmp"), "tiff": ("TIFF", ".tiff"),
                  "ppm": ("PPM", ".ppm")}
FCC_SUFFIX = ".fcc"
TMP_SUFFIX = ".fcctmp"  # hidden ``.<name>.<random>.fcctmp`` next to the output (storage.py: same)


class UsageError(Exception):
    """A problem with the command line itself (exit status 2), found before any file is written."""


class OutputExistsError(FileExistsError):
    """The output file exists and neither ``--force`` nor ``--skip-existing`` was given."""

    def __init__(self, path: Path):
        super().__init__(f"{path} exists (--force overwrites it, --skip-existing skips it)")


# --------------------------------------------------------------------------------------------
# files


@lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Writes ``data`` to ``path`` all or nothing: a temporary file in the same folder is written,
    fsync'ed and then renamed onto ``path`` (created with the usual umask permissions).

    Without ``overwrite`` an existing ``path`` is left alone and :class:`OutputExistsError` is
    raised (checked atomically by hard-linking where the file system allows it). The temporary
    file is removed in every case but a hard kill of the process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise OutputExistsError(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: no window for a concurrent writer
            except FileExistsError:
                raise OutputExistsError(path) from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise OutputExistsError(path) from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@lru_cache(maxsize=1)
def image_extensions() -> frozenset:
    """Lower-case file extensions (``".png"``, ...) of every format the installed Pillow reads."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN)


@dataclass
class Job:
    """One input file and its output, and what became of it."""

    src: Path
    dst: Path
    status: str = "pending"  # pending (not done), ok, skipped, failed
    error: Optional[str] = None
    height: Optional[int] = None
    width: Optional[int] = None
    layout: Optional[str] = None
    input_bytes: Optional[int] = None
    output_bytes: Optional[int] = None
    coded_bytes: Optional[int] = None  # size of the .fcc side (for bpp)

    @property
    def pixels(self) -> int:
        return (self.height or 0) * (self.width or 0)

    def record(self) -> dict:
        """The job as a JSON-ready dict."""
        bpp = 8 * self.coded_bytes / self.pixels if self.coded_bytes and self.pixels else None
        return {"input": str(self.src), "output": str(self.dst), "status": self.status,
                "error": self.error, "height": self.height, "width": self.width,
                "layout": self.layout, "input_bytes": self.input_bytes,
                "output_bytes": self.output_bytes, "bpp": bpp}


def plan_jobs(inputs: Sequence[str], out_dir: Path, *, wanted: Callable[[Path], bool],
              out_name: Callable[[Path], Path]) -> list[Job]:
    """Jobs for the command-line ``inputs`` (files and folders), in order.

    Files found in folders are kept when ``wanted(path)``; the output of an input with relative
    path ``rel`` (its name, for a file named directly) is ``out_dir / out_name(rel)``. Raises
    :class:`UsageError` for missing inputs, for two inputs with the same output and when the
    inputs hold no file at all (an empty folder among others is only a warning).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output folder {out_dir} is a file")
    out_real = os.path.realpath(out_dir)
    jobs: list[Job] = []
    owner: dict[str, Path] = {}  # real output path -> real input path
    for text in inputs:
        root = Path(text)
        if root.is_dir():
            found = [(p, p.relative_to(root)) for p in _walk(root, skip=out_real) if wanted(p)]
            if not found:
                print(f"fastcodec: warning: no input files found in {root}", file=sys.stderr)
        elif root.exists():
            found = [(root, Path(root.name))]
        else:
            raise UsageError(f"no such file or folder: {text}")
        for src, rel in found:
            dst = out_dir / out_name(rel)
            key, real_src = os.path.realpath(dst), Path(os.path.realpath(src))
            if key in owner:
                if owner[key] == real_src:  # the same file named twice
                    continue
                raise UsageError(f"{owner[key]} and {src} would both be written to {dst} "
                                 "(rename one, or use separate output folders)")
            owner[key] = real_src
            jobs.append(Job(src=src, dst=dst))
    if not jobs:
        raise UsageError(f"no input files found in {', '.join(map(str, inputs))}")
    return jobs


def _walk(root: Path, *, skip: str):
    """Files under ``root``, recursively and sorted, without hidden names or the ``skip`` folder."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) != skip)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (OSError, ValueError, TypeError)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# the pipeline: load (thread pool) -> code (this thread, in chunks) -> render + write (threads)

_END = object()


class Pipeline:
    """Runs jobs through ``load(job) -> data`` (background threads, in order, a bounded number of
    jobs ahead), ``code(list of data) -> list of results`` (the calling thread, ``chunk`` jobs at
    a time) and ``render(job, data, result) -> bytes`` + :func:`write_atomic` (writer threads).

    ``load``/``render`` fill the job's fields; failures are recorded on the job and reported
    through ``report(job)``. Without ``keep_going`` nothing new starts after the first failure.
    A ``KeyboardInterrupt`` stops the loaders and the codec, lets the writes already handed to
    the writers finish (their data is in memory) and is re-raised.
    """

    def __init__(self, *, load, code, render, chunk: int, keep_going: bool, overwrite: bool,
                 report: Callable[[Job], None], progress: Progress, loaders: int = 2,
                 writers: int = 2):
        self.load, self.code, self.render = load, code, render
        self.chunk = max(1, int(chunk))
        self.keep_going, self.overwrite = keep_going, overwrite
        self.report, self.progress = report, progress
        self.loaders, self.writers = max(1, loaders), max(1, writers)
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._lock = threading.Lock()

    # -- bookkeeping
    def fail(self, job: Job, exc: BaseException) -> None:
        with self._lock:
            job.status, job.error = "failed", _describe(exc)
        self._failed.set()
        self.report(job)

    def _halted(self) -> bool:
        return self._stop.is_set() or (self._failed.is_set() and not self.keep_going)

    # -- stages
    def run(self, jobs: Sequence[Job]) -> None:
        loaded: queue.Queue = queue.Queue(maxsize=self.chunk)
        loader = threading.Thread(target=self._load_all, args=(jobs, loaded), daemon=True,
                                  name="fastcodec-loader")
        writes: deque = deque()
        pool = ThreadPoolExecutor(self.writers, thread_name_prefix="fastcodec-writer")
        loader.start()
        try:
            pending: list = []
            while not self._halted():
                try:
                    entry = loaded.get(timeout=0.1)
                except queue.Empty:
                    continue
                if entry is _END:
                    break
                job, data, exc = entry
                if exc is not None:
                    self._code_and_submit(pending, pool, writes)  # the jobs before it first
                    self.fail(job, exc)
                    continue
                pending.append((job, data))
                if len(pending) >= self.chunk:
                    self._code_and_submit(pending, pool, writes)
            self._code_and_submit(pending, pool, writes)
        finally:
            self._stop.set()
            pool.shutdown(wait=True)  # every write handed over finishes, even after Ctrl-C
            loader.join()

    def _load_all(self, jobs: Sequence[Job], loaded: queue.Queue) -> None:
        ahead: deque = deque()
        with ThreadPoolExecutor(self.loaders, thread_name_prefix="fastcodec-load") as pool:
            try:
                for job in jobs:
                    if self._halted():
                        break
                    ahead.append((job, pool.submit(self.load, job)))
                    if len(ahead) >= 2 * self.loaders and not self._put(loaded, ahead.popleft()):
                        break
                while ahead and not self._halted():
                    if not self._put(loaded, ahead.popleft()):
                        break
            finally:
                for _, fut in ahead:
                    fut.cancel()
                self._put(loaded, None)

    def _put(self, loaded: queue.Queue, entry) -> bool:
        """Queues a loaded ``(job, future)`` (``None``: the end) unless the run stops first."""
        if entry is None:
            item = _END
        else:
            job, fut = entry
            try:
                item = (job, fut.result(), None)
            except Exception as exc:
                item = (job, None, exc)
        while not self._stop.is_set():
            try:
                loaded.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _code_and_submit(self, pending: list, pool: ThreadPoolExecutor, writes: deque) -> None:
        if not pending or self._halted():
            pending.clear()
            return
        batch = list(pending)
        pending.clear()
        try:
            outs = self.code([d for _, d in batch])
            if len(outs) != len(batch):
                raise RuntimeError(f"the codec returned {len(outs)} results for {len(batch)}")
            results = [(job, data, out, None) for (job, data), out in zip(batch, outs)]
        except Exception as exc:
            if len(batch) == 1:
                results = [(batch[0][0], batch[0][1], None, exc)]
            else:  # find the culprit(s): code the chunk one job at a time
                results = []
                for job, data in batch:
                    try:
                        results.append((job, data, self.code([data])[0], None))
                    except Exception as one_exc:
                        results.append((job, data, None, one_exc))
                        if not self.keep_going:
                            break
        for job, data, out, exc in results:
            if exc is not None:
                self.fail(job, exc)
            if self._halted():
                return
            if exc is None:
                writes.append(pool.submit(self._write, job, data, out))
        while len(writes) > 2 * self.chunk or (writes and writes[0].done()):
            writes.popleft().result()  # back-pressure: a bounded number of outputs in memory

    def _write(self, job: Job, data, out) -> None:
        if self._failed.is_set() and not self.keep_going:
            return
        try:
            blob = self.render(job, data, out)
            write_atomic(job.dst, blob, overwrite=self.overwrite)
        except Exception as exc:
            self.fail(job, exc)
            return
        with self._lock:
            job.status, job.output_bytes = "ok", len(blob)
        self.progress.update(1, megapixels=job.pixels / 1e6)


# --------------------------------------------------------------------------------------------
# compress / decompress


def read_image(path: Path, *, convert: bool = False) -> tuple[np.ndarray, str]:
    """An image file as ``(uint8 numpy array in its own layout, layout)``: HxWx3 ``"rgb"`` or
    HxW ``"gray"``, validated and converted as :func:`fastcodec.images.to_rgb_uint8` does
    (``convert``: RGBA, 16-bit, palette and other modes are converted instead of refused).
    EXIF orientation is applied, so the image is coded the way viewers show it."""
    from fastcodec.images import from_rgb_uint8, open_image_file, to_rgb_uint8

    try:
        with open_image_file(path, convert=convert) as im:
            rgb, layout = to_rgb_uint8(im, convert=convert)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if convert or "--convert" in text:
            raise
        hint = "pass convert=True"
        text = text.replace(hint, "pass --convert") if hint in text else \
            f"{text} (--convert converts it)"
        raise (TypeError if isinstance(exc, TypeError) else ValueError)(text) from None
    return from_rgb_uint8(rgb, layout), layout


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """uint8 HxWx3 / HxW / HxWx1 -> the bytes of an image file in ``fmt`` (see OUTPUT_FORMATS)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=OUTPUT_FORMATS[fmt][0])
    return buf.getvalue()


def _make_codec(**kw):
    """A :class:`fastcodec.Codec`; a codec that cannot be set up is a :class:`UsageError`."""
    from fastcodec import Codec

    try:
        return Codec(**kw)
    except Exception as exc:  # bad quality or device, missing weights, ...
        raise UsageError(f"cannot set up the codec: {_describe(exc)}") from exc


def _compress(args: argparse.Namespace) -> int:
    if args.ray is not None:  # the same job on Ray Data (docs/ray.md)
        try:
            from fastcodec.ray import run_cli
        except ImportError as exc:
            raise UsageError(str(exc)) from exc
        return run_cli(args)
    exts = image_extensions()
    jobs = plan_jobs(args.inputs, Path(args.out), wanted=lambda p: p.suffix.lower() in exts,
                     out_name=lambda rel: rel.with_suffix(FCC_SUFFIX))
    def setup():
        return _make_codec(quality=args.quality, device=args.device, threads=args.jobs,
                           batch_size=args.batch_size, transform_dtype=args.dtype,
                           model=args.model, refine_steps=args.refine).compress

    def load(job: Job) -> np.ndarray:
        job.input_bytes = job.src.stat().st_size
        image, job.layout = read_image(job.src, convert=args.convert)
        job.height, job.width = image.shape[:2]
        return image

    def render(job: Job, image, blob: bytes) -> bytes:
        job.coded_bytes = len(blob)
        return blob

    return _run_jobs(args, jobs, "compress", load=load, setup=setup, render=render,
                     extra={"quality": args.quality, "model": args.model,
                            "refine_steps": args.refine})


def _decompress(args: argparse.Namespace) -> int:
    ext = OUTPUT_FORMATS[args.format][1]
    jobs = plan_jobs(args.inputs, Path(args.out),
                     wanted=lambda p: p.suffix.lower() == FCC_SUFFIX,
                     out_name=lambda rel: rel.with_suffix(ext))

    def setup():
        codec = _make_codec(device=args.device, threads=args.jobs, batch_size=args.batch_size,
                            transform_dtype=args.dtype)
        return lambda blobs: codec.decompress(blobs, output="numpy", max_pixels=args.max_pixels)

    def load(job: Job) -> bytes:
        blob = job.src.read_bytes()
        header, _ = _unpack(blob, args.max_pixels)  # a damaged or foreign file fails here
        job.input_bytes = job.coded_bytes = len(blob)
        job.height, job.width, job.layout = header.height, header.width, header.layout
        return blob

    def render(job: Job, blob: bytes, image: np.ndarray) -> bytes:
        return encode_image(image, args.format)

    return _run_jobs(args, jobs, "decompress", load=load, setup=setup, render=render,
                     extra={"format": args.format})


def _run_jobs(args, jobs: list[Job], command: str, *, load, setup, render, extra: dict) -> int:
    """Skips/refuses existing outputs, runs the pipeline, prints the summary; the exit status.

    ``setup()`` returns the pipeline's ``code`` function (it sets up the codec, only when there
    is something to do); ``load``, ``render``: see :class:`Pipeline`."""
    _umask()  # read once here, in the main thread
    progress = Progress(0, label=command)

    def report(job: Job) -> None:
        progress.message(f"fastcodec {command}: error: {job.src}: {job.error}")

    todo = []
    for job in jobs:
        if args.force or not job.dst.exists():
            todo.append(job)
        elif args.skip_existing:
            job.status = "skipped"
        else:
            job.status, job.error = "failed", str(OutputExistsError(job.dst))
            report(job)
            if not args.keep_going:
                break
    interrupted, setup_seconds, start = False, 0.0, time.perf_counter()
    if todo and (args.keep_going or not any(j.status == "failed" for j in jobs)):
        code = setup()
        setup_seconds = time.perf_counter() - start
        start = time.perf_counter()
        progress.reset(len(todo))
        chunk = 4 * (args.batch_size or 8)
        pipeline = Pipeline(load=load, code=code, render=render, chunk=chunk,
                            keep_going=args.keep_going, overwrite=args.force, report=report,
                            progress=progress, loaders=min(4, os.cpu_count() or 1))
        try:
            with _sigterm_as_interrupt():
                pipeline.run(todo)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
    seconds = time.perf_counter() - start
    summary = _summary(jobs, seconds)
    summary["setup_seconds"] = setup_seconds
    ok = summary["failed"] == 0 and summary["not_done"] == 0 and not interrupted
    if args.json:
        doc = {"command": command, "ok": ok, "interrupted": interrupted, **extra,
               "output_dir": str(args.out), "summary": summary,
               "files": [j.record() for j in jobs]}
        print(json.dumps(doc, indent=2))
    else:
        print(_summary_table(command, summary))
    if interrupted:
        print(f"fastcodec {command}: interrupted after {summary['files']} files; the outputs "
              "written are complete: rerun the same command with --skip-existing to finish",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if ok else EXIT_FAILED


class _sigterm_as_interrupt:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only), so that a killed
    run cleans up as after Ctrl-C."""

    def __enter__(self):
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _summary(jobs: list[Job], seconds: float) -> dict:
    done = [j for j in jobs if j.status == "ok"]
    pixels = sum(j.pixels for j in done)
    coded = sum(j.coded_bytes or 0 for j in done)
    counts = {s: sum(j.status == s for j in jobs) for s in ("skipped", "failed", "pending")}
    return {
        "files": len(done), "skipped": counts["skipped"], "failed": counts["failed"],
        "not_done": counts["pending"], "megapixels": pixels / 1e6,
        "input_bytes": sum(j.input_bytes or 0 for j in done),
        "output_bytes": sum(j.output_bytes or 0 for j in done),
        "bpp": 8 * coded / pixels if pixels else None, "seconds": seconds,
        "mp_per_s": pixels / 1e6 / seconds if pixels and seconds > 0 else None,
    }


def _summary_table(command: str, s: dict) -> str:
    rows = [[{"compress": "compressed", "decompress": "decompressed"}[command], s["files"],
             f"{s['megapixels']:.3f}", f"{s['input_bytes']:,}", f"{s['output_bytes']:,}",
             "-" if s["bpp"] is None else f"{s['bpp']:.3f}",
             "-" if s["mp_per_s"] is None else f"{s['mp_per_s']:.2f}"]]
    for label, key in (("skipped (exist)", "skipped"), ("failed", "failed"),
                       ("not done", "not_done")):
        if s[key]:
            rows.append([label, s[key], None, None, None, None, None])
    table = format_table(["", "files", "MP", "input bytes", "output bytes", "bpp", "MP/s"], rows)
    return f"{table}\n({s['seconds']:.2f} s, after {s['setup_seconds']:.2f} s to set up the codec)"


# --------------------------------------------------------------------------------------------
# info


def _unpack(blob: bytes, max_pixels: int):
    """``container.unpack`` with the cap's hint in command-line terms."""
    from fastcodec.container import FormatError, unpack

    try:
        return unpack(blob, max_pixels=max_pixels)
    except FormatError as exc:
        text = str(exc)
        if "(max_pixels)" not in text:
            raise
        raise FormatError(text.replace("pass max_pixels=", "pass --max-pixels ")) from None


def _add_max_pixels_option(p: argparse.ArgumentParser) -> None:
    from fastcodec.container import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse files declaring more than N pixels per image, a guard against "
                        "crafted headers (default: %(default)s)")


def _info(args: argparse.Namespace) -> int:
    docs, failed = [], 0
    for name in args.files:
        path = Path(name)
        try:
            blob = path.read_bytes()
            header, _ = _unpack(blob, args.max_pixels)
        except (OSError, ValueError) as exc:  # FormatError is a ValueError
            failed += 1
            print(f"fastcodec info: error: {path}: {_describe(exc)}", file=sys.stderr)
            if args.json:
                docs.append({"file": str(path), "error": _describe(exc)})
            continue
        doc = {"file": str(path), "model_id": header.model_id,
               "weights_hash": header.weights_hash.hex(), "version": header.version,
               "quality": header.quality, "height": header.height, "width": header.width,
               "layout": header.layout, "latent_shape": list(header.latent_shape),
               "stream_lengths": list(header.stream_lengths), "bytes": len(blob),
               "bpp": 8 * len(blob) / (header.height * header.width)}
        docs.append(doc)
        if not args.json:
            m, h, w = header.latent_shape
            lengths = ", ".join(str(n) for n in header.stream_lengths)
            print(f"{path}\n"
                  f"  model     {header.model_id} (weights {doc['weights_hash']}, format "
                  f"v{header.version})\n"
                  f"  quality   {header.quality:g}\n"
                  f"  size      {header.width}x{header.height} ({header.layout})\n"
                  f"  latent    {m}x{h}x{w}\n"
                  f"  streams   {len(header.stream_lengths)} ({lengths} bytes)\n"
                  f"  bytes     {len(blob)}\n"
                  f"  bpp       {doc['bpp']:.4f}")
    if args.json:
        print(json.dumps(docs, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------------------------
# demo


def _demo(args: argparse.Namespace) -> int:
    from fastcodec.container import read_header
    from fastcodec.metrics import WINDOW_SIZE, ms_ssim, psnr
    from fastcodec.samples import sample_paths

    paths = [Path(p) for p in args.images] or sample_paths()
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise UsageError("two images have the same name: " + ", ".join(map(str, paths)))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} exists and is not a folder")
    qualities = list(dict.fromkeys(args.quality))
    images = {}
    for p in paths:
        try:
            images[p] = read_image(p, convert=True)[0]
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot read {p}: {_describe(exc)}") from exc
    codecs = {q: _make_codec(quality=q, device=args.device, model=args.model)
              for q in qualities}
    warm = np.zeros((32, 32, 3), np.uint8)  # loads weights and tables, warms the kernels
    codecs[qualities[0]].decompress(codecs[qualities[0]].compress(warm))

    rows, records = [], []
    progress = Progress(len(images) * len(codecs), label="demo")
    for path, image in images.items():
        pixels = image.shape[0] * image.shape[1]
        for q, codec in codecs.items():
            progress.update(0)
            t0 = time.perf_counter()
            (blob,) = codec.compress(image)
            t1 = time.perf_counter()
            (decoded,) = codec.decompress([blob])
            t2 = time.perf_counter()
            if decoded.shape != image.shape:
                raise RuntimeError(f"{path}: decoded shape {decoded.shape} != {image.shape}")
            name = f"{path.stem}-q{q:g}"
            write_atomic(out_dir / (name + FCC_SUFFIX), blob, overwrite=True)
            write_atomic(out_dir / (name + ".png"), encode_image(decoded, "png"), overwrite=True)
            header = read_header(blob)
            rec = {"image": str(path), "quality": header.quality, "model_id": header.model_id,
                   "height": image.shape[0], "width": image.shape[1], "bytes": len(blob),
                   "bpp": 8 * len(blob) / pixels, "psnr": psnr(image, decoded),
                   # MS-SSIM needs WINDOW_SIZE px per side; smaller images get None (n/a)
                   "ms_ssim": (ms_ssim(image, decoded) if min(image.shape[:2]) >= WINDOW_SIZE
                               else None),
                   "encode_mp_per_s": pixels / 1e6 / (t1 - t0),
                   "decode_mp_per_s": pixels / 1e6 / (t2 - t1),
                   "fcc": str(out_dir / (name + FCC_SUFFIX)), "png": str(out_dir / (name + ".png"))}
            records.append(rec)
            rows.append([path.name, f"{image.shape[1]}x{image.shape[0]}", f"{header.quality:g}",
                         f"{rec['bpp']:.3f}", f"{rec['psnr']:.2f}",
                         "n/a" if rec["ms_ssim"] is None else f"{rec['ms_ssim']:.4f}",
                         f"{rec['encode_mp_per_s']:.2f}", f"{rec['decode_mp_per_s']:.2f}",
                         f"{len(blob):,}"])
            progress.update(1, megapixels=2 * pixels / 1e6)
    progress.close()
    write_atomic(out_dir / "demo.json", (json.dumps(records, indent=2) + "\n").encode(),
                 overwrite=True)
    device = getattr(codecs[qualities[0]], "device", args.device or "auto")
    print(f"fastcodec demo: model {records[0]['model_id']} on {device}, "
          f"{len(paths)} image(s) x {len(qualities)} qualities (1 = smallest, 6 = best)\n")
    print(format_table(["image", "size", "quality", "bpp", "PSNR dB", "MS-SSIM", "enc MP/s",
                        "dec MP/s", "bytes"], rows))
    print(f"\nwritten to {out_dir}/: <image>-q<quality>.fcc (compressed), <image>-q<quality>.png "
          "(decoded), demo.json (these numbers)")
    print("MP/s: one image at a time, after a warm-up; `fastcodec compress` batches many.")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser


def _train(args: argparse.Namespace) -> int:
    from fastcodec.train import main as train_main

    return train_main(args.train_args)


def _add_run_options(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--device", default=None,
                   help="torch device for the transforms (default: cuda if available, else cpu)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="J",
                   help="range coder threads (default: one per CPU core)")
    if batch:
        p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                       help="images per transform batch (default: 8 on CUDA, 1 on CPU)")
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="precision of the transforms (default float32; bfloat16 on CUDA "
                            "or on CPUs with AMX/AVX512-BF16 is 2-4x faster; float16: CUDA). "
                            "The entropy coding stays bit-exact either way")
    once = p.add_mutually_exclusive_group()
    once.add_argument("--force", action="store_true", help="overwrite existing outputs")
    once.add_argument("--skip-existing", action="store_true",
                      help="leave existing outputs alone (finishes an interrupted run)")
    p.add_argument("--keep-going", action="store_true",
                   help="report a file that fails and go on with the others (exit status 1)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (files and totals) instead of the table")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    from fastcodec.zoo import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, metavar="ID",
                   help="installed model to code with (`python -m fastcodec.zoo list`; "
                        "default: %(default)s); decompress finds it in each file")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def refine_steps_arg(text: str) -> int:
    """``--refine STEPS`` (argparse type); imports torch only when the option is given."""
    from fastcodec.refine import steps_argument

    return steps_argument(text)


def _quality(text: str) -> float:
    """A public quality from the command line, snapped to the grid (argparse type)."""
    from fastcodec.zoo import snap_quality

    try:
        value = float(text)
        snapped = snap_quality(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if abs(snapped - value) > 1e-9:
        print(f"fastcodec: note: quality {text} is not on the 0.25 grid; using {snapped:g}",
              file=sys.stderr)
    return snapped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcodec", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from fastcodec import __version__

    parser.add_argument("--version", action="version", version=f"fastcodec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    comp = sub.add_parser("compress", help="images (files or folders) -> .fcc files",
                          description="Compress images (PNG, JPEG, anything Pillow reads; "
                          "folders recursively) to .fcc files in OUTDIR, keeping the paths "
                          "under each folder. See `fastcodec --help` for the shared rules.")
    comp.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    comp.add_argument("-q", "--quality", type=_quality, default=4.0,
                      help="1 (smallest) to 6 (best), steps of 0.25 (default: %(default)s)")
    _add_run_options(comp)
    _add_model_option(comp)
    comp.add_argument("--refine", type=refine_steps_arg, default=0, metavar="STEPS",
                      help="encoder-side latent refinement: STEPS optimization steps per image "
                           "for a higher PSNR at about the same size (same model and format; "
                           "each step runs the decoder forward and backward, about 4 decodes; "
                           "default 0: off; try 50)")
    comp.add_argument("--convert", action="store_true",
                      help="convert RGBA (alpha dropped), 16-bit, palette and other modes "
                           "instead of failing on them")
    comp.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                      help="run on Ray Data (pip install 'fastcodec[ray]'; docs/ray.md): the "
                           "cluster at ADDRESS (auto, host:port, ray://...), else a local one; "
                           "writes OUTDIR/_manifest.parquet")
    comp.set_defaults(run=_compress)

    dec = sub.add_parser("decompress", help=".fcc files (or folders) -> images",
                         description="Decompress .fcc files (folders: every *.fcc inside, "
                         "recursively) to images in OUTDIR, keeping the paths under each folder.")
    dec.add_argument("inputs", nargs="+", metavar="FILE|DIR", help=".fcc files or folders")
    dec.add_argument("--format", choices=list(OUTPUT_FORMATS), default="png",
                     help="output image format (default: %(default)s)")
    _add_run_options(dec)
    _add_max_pixels_option(dec)
    dec.set_defaults(run=_decompress)

    info = sub.add_parser("info", help="print the header of .fcc files",
                          description="Check .fcc files and print their header fields (model, "
                          "quality, size, layout, latent shape, streams), size and bpp.")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print a JSON list instead")
    _add_max_pixels_option(info)
    info.set_defaults(run=_info)

    demo = sub.add_parser("demo", help="compress the bundled sample image at a few qualities",
                          description="Compress the bundled sample image(s) (or IMAGES) at a few "
                          "qualities; write the .fcc files and the decoded PNGs to OUT (its own "
                          "files there are replaced on every run) and print bpp, PSNR, MS-SSIM "
                          "and speed.")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("-o", "--out", default="fastcodec-demo",
                      help="output folder (default: %(default)s)")
    demo.add_argument("-q", "--quality", nargs="+", default=[2.0, 4.0, 6.0],
                      type=_quality, metavar="Q", help="qualities, 1 to 6 (default: 2 4 6)")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    _add_model_option(demo)
    demo.set_defaults(run=_demo)

    from fastcodec import bench  # options, help and run() live there (stdlib-only import)
    from fastcodec import evaluate

    evaluate.configure_parser(sub.add_parser(
        "eval", help="rate-distortion and speed of the codec on a folder of images"))
    bench.configure_parser(sub.add_parser("bench",
                                          help="run the benchmark suite; store, compare, plot"))
    train = sub.add_parser(
        "train", add_help=False,
        help="train the learned codec (options: fastcodec train --help)",
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(run=_train)
    return parser


_RAY_HOST_PORT = re.compile(r"^[\w.\-]+:\d+$|^\[[0-9A-Fa-f:.]+\]:\d+$")  # host:port, [v6]:port


def _looks_like_ray_address(text: str) -> bool:
    """``auto``, ``local``, ``ray://...`` or ``host:port``; not ``s3://...`` or a path."""
    return text in ("auto", "local") or text.startswith("ray://") or bool(
        _RAY_HOST_PORT.match(text))


def _ray_flag(argv: list) -> list:
    """``--ray`` takes an optional ADDRESS; a following word that is not address-like (``auto``,
    ``local``, ``host:port``, ``ray://...``) is an input, so ``--ray photos/`` means a local
    cluster and the input ``photos/``."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--ray" and not out[i + 1].startswith("-") and not _looks_like_ray_address(
                out[i + 1]):
            out[i] = "--ray=local"
    return out


def main(argv: Optional[list] = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":  # its options are parsed by fastcodec.train itself
        return _train(argparse.Namespace(train_args=argv[1:]))
    argv = _ray_flag(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"fastcodec {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before any output was written (the pipeline handles its own)
        print(f"fastcodec {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
