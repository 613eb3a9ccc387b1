"""The ``map_batches`` callables that run on the Ray actors: :class:`CompressWorker` and
:class:`DecompressWorker`, on shared batch plumbing (inputs, outputs, manifest rows)."""

from __future__ import annotations

import io
import sys
import zlib
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa

from fastcodec.ray.manifest import MANIFEST_SCHEMA
from fastcodec.storage import (
    Location,
    write_atomic,
    read_file,
    file_exists,
    exists_error,
    read_if_exists,
    output_key,
    key_from_path,
)

FCC = ".fcc"


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


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

    out_ext = FCC

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
                    key = key_from_path(source, self.relative_to)
                except ValueError as exc:
                    rows.add(source, None, "failed", error=_error_text(exc))
                    continue
            out_key = output_key(key, self.out_ext)
            item = (_Item(source, key, self.dest.join(out_key), self.dest.uri_of(out_key))
                    if self.dest is not None else _Item(source, key, None, None))
            out.append((item, (batch, i, loc, path) if self.sources is not None else (batch, i)))
        return out

    def _raw(self, ref) -> Tuple[str, Any]:
        """("bytes", data) or ("array", ndarray) for an item's reference."""
        if len(ref) == 4:
            _, _, loc, path = ref
            return "bytes", read_file(loc.fs, path)
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


class CompressWorker(_Worker):
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
            if self.existing == "error" and file_exists(self.dest.fs, item.out_path):
                raise exists_error(item.out_uri)
            if self.existing == "verify":
                existing = read_if_exists(self.dest.fs, item.out_path)
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


class DecompressWorker(_Worker):
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
                    file_exists(self.dest.fs, item.out_path):
                raise exists_error(item.out_uri)
            if self.dest is not None and self.existing == "verify":
                existing = read_if_exists(self.dest.fs, item.out_path)
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
