"""One ``compress`` or ``decompress`` run over its planned jobs (:func:`run_jobs`): existing
outputs skipped or refused, the pipeline run with a progress bar, the summary and exit status."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from fastcodec.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from fastcodec.cli.files import Job, OutputExistsError, current_umask
from fastcodec.cli.pipeline import Pipeline
from fastcodec.progress import Progress, format_table


def run_jobs(args, jobs: list[Job], command: str, *, load, setup, render, extra: dict) -> int:
    """Skips/refuses existing outputs, runs the pipeline, prints the summary; the exit status.

    ``setup()`` returns the pipeline's ``code`` function (it sets up the codec, only when there
    is something to do); ``load``, ``render``: see :class:`Pipeline`."""
    current_umask()  # read once here, in the main thread
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
