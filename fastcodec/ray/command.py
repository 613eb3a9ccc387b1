"""The command line's Ray run: ``fastcodec compress --ray [ADDRESS] INPUT... -o DEST``
(:func:`run_cli`, called by ``fastcodec.cli``) on :func:`compress_dataset`."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

from fastcodec.ray.jobs import compress_dataset
from fastcodec.ray.resources import ensure_ray

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
        ensure_ray(_ray_address(args))
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
