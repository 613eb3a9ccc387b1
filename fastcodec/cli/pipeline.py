"""The batch pipeline: load (thread pool) -> code (this thread, in chunks) -> render + write
(threads), the :class:`Pipeline` that ``compress`` and ``decompress`` run their jobs through."""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from fastcodec.cli.errors import describe_error
from fastcodec.cli.files import Job, write_atomic
from fastcodec.progress import Progress

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
            job.status, job.error = "failed", describe_error(exc)
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
