"""Files on any ``pyarrow.fs`` filesystem (local, S3, GCS, HDFS): locations, listing, atomic
writes. The storage layer of :mod:`fastcodec.ray`.

Atomic writes: where the filesystem renames atomically (local, HDFS) a file is written under a
hidden temporary name (``.<name>.<uuid>.fcctmp``) next to its target and renamed over it; on
object stores, where a rename is a copy, the object is written in one upload, which the store
only makes visible once complete.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

try:
    import pyarrow.fs as pafs
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('fastcodec.storage needs pyarrow: pip install "fastcodec[ray]"') from exc

_TMP_SUFFIX = ".fcctmp"  # hidden temporary files: ".<name>.<uuid>.fcctmp"
_RENAME_ATOMIC = ("local", "hdfs")  # pyarrow filesystem type names with an atomic rename

@dataclass(frozen=True)
class Location:
    """A folder (or file) on a ``pyarrow.fs`` filesystem: ``fs``, ``path`` inside it (no
    trailing slash) and ``uri`` (how it is shown in manifests: ``s3://bucket/x`` or a local
    absolute path). Picklable, so workers receive it."""

    fs: Any
    path: str
    uri: str

    @classmethod
    def resolve(cls, where, filesystem=None) -> "Location":
        """A local path, a ``file://``/``s3://``/``gs://``/... URI, or a path inside the given
        ``filesystem`` (a ``pyarrow.fs.FileSystem``)."""
        if not isinstance(where, (str, os.PathLike)):
            raise TypeError(f"expected a path or URI, got {type(where).__name__}")
        text = os.fspath(where)
        if not text:
            raise ValueError("empty path")
        if filesystem is not None:
            if not isinstance(filesystem, pafs.FileSystem):
                raise TypeError("filesystem must be a pyarrow.fs.FileSystem")
            path = text.rstrip("/") or "/"
            return cls(filesystem, path, path)
        if "://" in text:
            fs, path = pafs.FileSystem.from_uri(text)
            path = path.rstrip("/") or "/"
            scheme = text.split("://", 1)[0]
            uri = path if scheme == "file" else f"{scheme}://{path}"
            return cls(fs, path, uri)
        path = os.path.abspath(os.path.expanduser(text)).replace(os.sep, "/")
        return cls(pafs.LocalFileSystem(), path, path)

    def join(self, key: str) -> str:
        return f"{self.path.rstrip('/')}/{key}"

    def uri_of(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"


def _rename_is_atomic(fs) -> bool:
    if isinstance(fs, pafs.SubTreeFileSystem):
        return _rename_is_atomic(fs.base_fs)
    return fs.type_name in _RENAME_ATOMIC


def write_atomic(fs, path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` on ``fs`` so that readers see the old file (or none) or the
    whole new one, never a part. Parent folders are created.

    Filesystems with an atomic rename: written to a hidden ``.<name>.<uuid>.fcctmp`` in the same
    folder, then renamed over the target (the temporary file is removed on error). Object stores
    (S3, GCS, ...; their "rename" is a copy): one upload to the target, which the store makes
    visible only once complete; a crashed upload leaves no object (at most an incomplete
    multipart upload, removed by the bucket's lifecycle rules)."""
    parent, name = posixpath.split(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    if not _rename_is_atomic(fs):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def read_file(fs, path: str) -> bytes:
    """The whole file ``path`` on ``fs``."""
    with fs.open_input_stream(path) as f:
        return f.readall()


def image_extensions() -> Tuple[str, ...]:
    """Lower-case extensions (``".png"``, ...) of every format the installed Pillow reads: the
    files a source folder contributes (as for ``fastcodec compress``)."""
    from PIL import Image

    Image.init()
    return tuple(sorted(ext.lower() for ext, fmt in Image.registered_extensions().items()
                        if fmt in Image.OPEN))


def file_exists(fs, path: str) -> bool:
    """Whether anything (file or folder) is at ``path`` on ``fs``."""
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def exists_error(uri: str) -> FileExistsError:
    """The error for an output that exists and may not be replaced, naming the way out."""
    return FileExistsError(f"{uri} exists (existing='overwrite' / --force replaces it, "
                           f"existing='verify' / --skip-existing keeps it when it is valid)")


def read_if_exists(fs, path: str) -> Optional[bytes]:
    """The file's bytes, or None when it is missing or cannot be read (then it is rewritten)."""
    try:
        return read_file(fs, path)
    except OSError:
        return None


def sweep_temporaries(dest: Location, started: float) -> int:
    """Removes temporary files of interrupted writes (older than ``started``, a Unix time) under
    ``dest``; returns how many. Only needed where writes go through a rename."""
    if not _rename_is_atomic(dest.fs):
        return 0
    selector = pafs.FileSelector(dest.path, recursive=True, allow_not_found=True)
    removed = 0
    for info in dest.fs.get_file_info(selector):
        name = posixpath.basename(info.path)
        ours = name.startswith(".") and name.endswith(_TMP_SUFFIX)
        if info.type != pafs.FileType.File or not ours:
            continue
        if info.mtime is not None and info.mtime.timestamp() >= started:
            continue  # possibly another job's write in flight
        try:
            dest.fs.delete_file(info.path)
            removed += 1
        except OSError:
            pass
    return removed


def _hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def list_sources(sources, filesystem, extensions, skip: Optional[Location] = None
                 ) -> Tuple[List[Location], List[dict]]:
    """Rows ``{"key", "loc", "path"}`` for every matching file of the sources (folders are
    listed recursively; a file is taken as is), sorted by key. ``key`` is the path relative to
    its folder (a file's own name); ValueError when two sources give the same key. Files under
    ``skip`` (the destination, when it lies inside a source) are left out."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    locations = [Location.resolve(s, filesystem) for s in sources]
    if not locations:
        raise ValueError("no source given")
    exts = tuple(e.lower() for e in extensions)
    rows: Dict[str, dict] = {}
    for i, loc in enumerate(locations):
        info = loc.fs.get_file_info(loc.path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"source not found: {loc.uri}")
        if info.type == pafs.FileType.File:
            found = [(posixpath.basename(loc.path), loc.path)]
        else:
            selector = pafs.FileSelector(loc.path, recursive=True)
            prefix = len(loc.path.rstrip("/")) + 1
            found = [
                (f.path[prefix:], f.path)
                for f in loc.fs.get_file_info(selector)
                if f.type == pafs.FileType.File
            ]
        skipped = (skip.path.rstrip("/") + "/" if skip is not None
                   and skip.fs.type_name == loc.fs.type_name else None)
        for key, path in found:
            if _hidden(key) or not key.lower().endswith(exts):
                continue
            if skipped is not None and path.startswith(skipped):
                continue
            if key in rows:
                raise ValueError(f"two sources give the same relative path {key!r}")
            rows[key] = {"key": key, "loc": i, "path": path}
    return locations, [rows[k] for k in sorted(rows)]


def output_key(key: str, ext: str) -> str:
    """The output's relative key for input ``key``: its extension replaced by ``ext``."""
    return posixpath.splitext(key)[0] + ext


def check_output_collisions(rows: List[dict], ext: str) -> None:
    """ValueError when two inputs (``rows`` with ``"key"``) would write the same output."""
    seen: Dict[str, str] = {}
    for row in rows:
        out = output_key(row["key"], ext)
        if out in seen:
            raise ValueError(
                f"{seen[out]!r} and {row['key']!r} would both be written to {out!r}; "
                "write them to different destinations"
            )
        seen[out] = row["key"]


def key_from_path(path: str, relative_to: Optional[str]) -> str:
    """The relative key of a Dataset row's ``path``: ``path`` minus ``relative_to`` (or minus
    its leading slashes). ValueError for paths outside ``relative_to`` or escaping it."""
    p = str(path).replace("\\", "/")
    if relative_to is not None:
        root = relative_to.replace("\\", "/").rstrip("/") + "/"
        if not p.startswith(root):
            raise ValueError(f"path {p!r} is not under relative_to={relative_to!r}")
        p = p[len(root):]
    key = posixpath.normpath(p.lstrip("/"))
    if key in (".", "") or key.startswith("../") or key == "..":
        raise ValueError(f"path {path!r} does not name a file inside the destination")
    return key
