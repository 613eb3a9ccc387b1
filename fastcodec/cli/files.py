"""Output files written all or nothing (:func:`write_atomic`) and the plan of a batch command:
which input becomes which output (:func:`plan_jobs`, one :class:`Job` each)."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

from fastcodec.cli.errors import UsageError

TMP_SUFFIX = ".fcctmp"  # hidden ``.<name>.<random>.fcctmp`` next to the output (storage.py: same)


class OutputExistsError(FileExistsError):
    """The output file exists and neither ``--force`` nor ``--skip-existing`` was given."""

    def __init__(self, path: Path):
        super().__init__(f"{path} exists (--force overwrites it, --skip-existing skips it)")


@lru_cache(maxsize=1)
def current_umask() -> int:
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
        os.chmod(tmp, 0o666 & ~current_umask())
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
