"""Images/s of ``fastcodec.ray.compress_dataset`` with 1..N workers against the single-process
``fastcodec.Codec``, on the same folder of images (crops of the bundled sample).

    python benches/ray_throughput.py                      # 96 images of 256x256, workers 1 and 2
    python benches/ray_throughput.py --images 96 --size 512 --workers 1 2 4 --json out.json
    python benches/ray_throughput.py --address auto       # on a running cluster (GPU workers
                                                          # when it has GPUs)

Every variant does the same end-to-end work: read the PNG files, decode them, compress at
``--quality``, write one ``.fcc`` per image. Reported per variant:

* ``images_per_s``: images / wall time of the whole call (for Ray: listing, actor start-up with
  the model load, the run and the manifest; what a user waits for);
* ``steady_images_per_s``: the rate once everything is up. Single process: images / time after
  the model load and a warm-up call. Ray: a second job of one batch per worker pays the same
  start-up, so steady = (extra images) / (extra seconds) between the two jobs;
* ``startup_s``: single process, model load and warm-up; Ray, the wall time of that
  one-batch-per-worker job (start-up plus one batch).

The single-process baseline uses every CPU (torch threads and range-coder threads = the
machine's cores, or ``--threads``); each Ray CPU worker reserves and uses one CPU. The Ray
outputs are checked byte for byte against the baseline's. Not a pytest benchmark (it starts a Ray
instance); run it niced when the machine is shared, and say what else was running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder: Path, count: int, size: int) -> list:
    """``count`` PNG crops (``size`` x ``size``, clamped to the sample) of the bundled sample,
    flipped and shifted so they differ; returns their relative names."""
    from PIL import Image

    from fastcodec.samples import sample_paths

    with Image.open(sample_paths()[0]) as im:
        sample = np.asarray(im.convert("RGB"))
    h, w = min(size, sample.shape[0]), min(size, sample.shape[1])
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        y = int(rng.integers(0, sample.shape[0] - h + 1))
        x = int(rng.integers(0, sample.shape[1] - w + 1))
        crop = sample[y:y + h, x:x + w]
        crop = crop[:, ::-1] if i % 2 else crop
        name = f"d{i % 4}/img{i:04d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / name)
        names.append(name)
    return names


def single_process(src: Path, names: list, out: Path, quality: float, threads: int,
                   batch_size: int) -> dict:
    """Reads, compresses (one ``Codec.compress`` call per ``batch_size`` images) and writes."""
    from PIL import Image

    import fastcodec

    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    codec = fastcodec.Codec(quality, "cpu", threads=threads, batch_size=batch_size)
    with Image.open(src / names[0]) as im:
        codec.compress(im.convert("RGB"))  # warm-up: first-call costs count as start-up
    t_ready = time.perf_counter()
    blobs = {}
    for start in range(0, len(names), batch_size):
        chunk = names[start:start + batch_size]
        images = []
        for name in chunk:
            with Image.open(src / name) as im:
                im.load()
                images.append(im.copy())
        for name, blob in zip(chunk, codec.compress(images)):
            target = out / (name[:-4] + ".fcc")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
            blobs[name] = blob
    t1 = time.perf_counter()
    return {
        "variant": f"single-process Codec ({threads} threads)",
        "seconds": t1 - t0,
        "images_per_s": len(names) / (t1 - t0),
        "steady_images_per_s": len(names) / (t1 - t_ready),
        "startup_s": t_ready - t0,
        "bytes": sum(len(b) for b in blobs.values()),
    }, blobs


def ray_job(src: Path, out: Path, quality: float, workers: int, batch_size: int,
            device) -> tuple:
    """(wall seconds, summary) of one ``compress_dataset`` call (outputs recoded)."""
    from fastcodec.ray import compress_dataset

    t0 = time.perf_counter()
    summary = compress_dataset(str(src), str(out), quality=quality, concurrency=workers,
                               batch_size=batch_size, device=device,
                               existing="overwrite")
    seconds = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"failures: {summary.failures}")
    return seconds, summary


def ray_run(src: Path, small: Path, tmp: Path, quality: float, workers: int, batch_size: int,
            device) -> dict:
    """The full job, and a job of one batch per worker (``small``) that costs the same
    start-up: steady rate = extra images / extra seconds."""
    small_s, small_summary = ray_job(small, tmp / f"small{workers}", quality, workers,
                                     batch_size, device)
    seconds, summary = ray_job(src, tmp / f"ray{workers}", quality, workers, batch_size, device)
    extra = summary.total - small_summary.total
    return {
        "variant": f"ray, {workers} worker{'s' if workers > 1 else ''}",
        "seconds": seconds,
        "images_per_s": summary.total / seconds,
        "steady_images_per_s": extra / (seconds - small_s) if seconds > small_s else float("nan"),
        "startup_s": small_s,  # wall time of the one-batch-per-worker job
        "bytes": summary.bytes_out,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=96, help="number of images (default 96)")
    p.add_argument("--size", type=int, default=256, help="side of the square crops (default 256)")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="Ray actor pool sizes to time (default: 1 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads of the single-process baseline, timed with 1 thread and with "
                        "this many (default: all cores)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local instance with --num-cpus)")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1,
                   help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--device", default=None, help="device of the Ray workers (default: auto)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--note", default="", help="stored with the results (what else was running)")
    args = p.parse_args(argv)

    import ray
    import ray.data

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        names = make_images(src, args.images, args.size)
        rows = []
        for threads in sorted({1, args.threads}):
            base, blobs = single_process(src, names, tmp / f"single{threads}", args.quality,
                                         threads, args.batch_size)
            rows.append(base)
        if args.address is None:
            ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=args.address)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            for n in args.workers:
                small = tmp / f"src{n}"
                for name in names[: n * args.batch_size]:
                    (small / name).parent.mkdir(parents=True, exist_ok=True)
                    (small / name).write_bytes((src / name).read_bytes())
                row = ray_run(src, small, tmp, args.quality, n, args.batch_size, args.device)
                out = tmp / f"ray{n}"
                same = all((out / (k[:-4] + ".fcc")).read_bytes() == b for k, b in blobs.items())
                row["identical_to_single_process"] = same
                rows.append(row)
        finally:
            ray.shutdown()

    result = {
        "images": args.images, "size": args.size, "quality": args.quality,
        "batch_size": args.batch_size, "cpus": os.cpu_count(), "machine": platform.platform(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(), "note": args.note, "rows": rows,
    }
    print(f"{args.images} images {args.size}x{args.size}, quality {args.quality}, "
          f"batch {args.batch_size}, {os.cpu_count()} cores")
    print(f"{'variant':<34}{'wall s':>8}{'img/s':>8}{'steady img/s':>14}{'start-up s':>12}")
    for r in rows:
        print(f"{r['variant']:<34}{r['seconds']:>8.1f}{r['images_per_s']:>8.2f}"
              f"{r['steady_images_per_s']:>14.2f}{r['startup_s']:>12.1f}"
              + ("" if r.get("identical_to_single_process", True) else "  OUTPUT DIFFERS"))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r.get("identical_to_single_process", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
